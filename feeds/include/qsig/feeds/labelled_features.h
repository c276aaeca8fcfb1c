// Labelled feature rows, the training data: a source (the simulator, or a pcap / ITCH capture)
// runs into a FeedProcessor in-process (no sockets: the exact bytes and the exact code path the
// server uses), and every feature vector gets a forward-return label,
//   label = 1e4 * (mid after `horizon` more updates of the same instrument / mid - 1)
// in basis points. Rows whose horizon runs past the end are dropped. feeds writes no file: the
// `qsig features` command writes the rows in the feature file format (models/io).
// Thread-safety: reentrant; the row callback runs on the calling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "qsig/feeds/feature_vector.h"
#include "qsig/feeds/feed_processor.h"
#include "qsig/feeds/replay.h"
#include "qsig/feeds/simulator.h"

namespace qsig::feeds {

struct LabelledFeaturesOptions {
  SimulatorOptions sim;
  FeedProcessorOptions feed;      // Its `features` is the feature set.
  uint64_t messages = 1'000'000;  // Simulator messages (ignored for a replay).
  int horizon = 20;
  std::optional<ReplayOptions> replay = {};  // Set: read this capture instead of simulating.
};

// One labelled row, in feed order (rows are emitted in arrival order once labelled).
struct LabelledRow {
  const FeatureVector& fv;
  std::string_view symbol;  // The instrument's symbol as the feed named it.
  double label;
};

struct LabelledFeaturesSummary {
  uint64_t rows = 0;
  std::vector<std::pair<uint16_t, std::string>> symbols;  // (locate, symbol) the feed named.
};

// The feature names of options.feed.features, after checking the options (horizon >= 1, a
// valid feature set); errors name the field.
absl::StatusOr<std::vector<std::string>> LabelledFeatureNames(
    const LabelledFeaturesOptions& options);

// Runs the source to its end and calls `on_row` for every labelled row.
absl::StatusOr<LabelledFeaturesSummary> GenerateLabelledFeatures(
    const LabelledFeaturesOptions& options, const std::function<void(const LabelledRow&)>& on_row);

}  // namespace qsig::feeds
