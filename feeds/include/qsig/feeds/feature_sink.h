// FeatureSink: where a FeedProcessor hands each feature vector, on the feed thread.
#pragma once

#include <cstdint>

#include "qsig/feeds/feature_vector.h"

namespace qsig::feeds {

// Receives every feature vector the processor produces, on the feed thread.
class FeatureSink {
 public:
  virtual ~FeatureSink() = default;
  virtual void OnFeatures(const FeatureVector& fv) noexcept = 0;
};

}  // namespace qsig::feeds
