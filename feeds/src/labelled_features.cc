// GenerateLabelledFeatures: simulator or capture -> FeedProcessor in-process -> feature vectors
// with forward-return labels, handed to the caller in feed order.
#include "qsig/feeds/labelled_features.h"

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "internal/str.h"
#include "qsig/feeds/feature_sink.h"
#include "qsig/feeds/feed_processor.h"
#include "qsig/feeds/labelled_features.h"
#include "qsig/feeds/replay.h"
#include "qsig/feeds/simulator.h"

namespace qsig::feeds {
namespace {

// Buffers rows until their label (the mid `horizon` updates later, same instrument) is known,
// and emits them in arrival order so the output is a time series.
class LabellingSink : public FeatureSink {
 public:
  LabellingSink(const FeedProcessor& feed, int horizon,
                const std::function<void(const LabelledRow&)>& on_row)
      : feed_(feed),
        horizon_(static_cast<size_t>(horizon)),
        on_row_(on_row),
        pending_by_locate_(static_cast<size_t>(feed.max_instruments()) + 1) {}

  void OnFeatures(const FeatureVector& fv) noexcept override {
    std::deque<uint64_t>& mine = pending_by_locate_[fv.locate];
    if (mine.size() == horizon_) {
      Row& r = rows_[mine.front() - first_row_];
      r.label = 1e4 * (fv.mid_price / r.fv.mid_price - 1.0);
      r.labelled = true;
      mine.pop_front();
    }
    mine.push_back(first_row_ + rows_.size());
    rows_.push_back(Row{fv, 0.0, false});
    while (!rows_.empty() && rows_.front().labelled) {
      const Row& r = rows_.front();
      on_row_(LabelledRow{r.fv, feed_.symbol(r.fv.locate), r.label});
      ++emitted_;
      rows_.pop_front();
      ++first_row_;
    }
  }

  uint64_t emitted() const { return emitted_; }

 private:
  struct Row {
    FeatureVector fv;
    double label;
    bool labelled;
  };

  const FeedProcessor& feed_;
  size_t horizon_;
  const std::function<void(const LabelledRow&)>& on_row_;
  std::vector<std::deque<uint64_t>> pending_by_locate_;  // Global row ids awaiting a label.
  std::deque<Row> rows_;
  uint64_t first_row_ = 0;  // Global id of rows_.front().
  uint64_t emitted_ = 0;
};

}  // namespace

absl::StatusOr<std::vector<std::string>> LabelledFeatureNames(
    const LabelledFeaturesOptions& options) {
  if (options.horizon < 1) {
    return absl::InvalidArgumentError(
        internal::Cat("LabelledFeaturesOptions.horizon is ", options.horizon, "; it must be >= 1"));
  }
  return FeatureNames(options.feed.features);
}

absl::StatusOr<LabelledFeaturesSummary> GenerateLabelledFeatures(
    const LabelledFeaturesOptions& options, const std::function<void(const LabelledRow&)>& on_row) {
  absl::StatusOr<std::vector<std::string>> names = LabelledFeatureNames(options);
  if (!names.ok()) return names.status();
  std::unique_ptr<ReplaySource> replay;
  if (options.replay) {
    auto r = ReplaySource::Open(*options.replay);
    if (!r.ok()) return r.status();
    replay = std::move(*r);
  }

  FeedProcessor feed(options.feed);
  LabellingSink sink(feed, options.horizon, on_row);
  if (replay) {
    while (replay->Poll(100, feed, sink, 1024) >= 0) {
    }
  } else {
    Simulator sim(options.sim);
    std::vector<uint8_t> packet(65536);
    // First message is sequence 1, so next_sequence() - 1 messages have been produced.
    while (sim.next_sequence() - 1 < options.messages) {
      const size_t n = sim.NextPacket(packet);
      feed.OnDatagram(std::span<const uint8_t>(packet.data(), n), 0, sink);
    }
  }

  LabelledFeaturesSummary summary;
  summary.rows = sink.emitted();
  for (int l = 1; l <= feed.max_instruments(); ++l) {
    const std::string_view s = feed.symbol(static_cast<uint16_t>(l));
    if (!s.empty()) summary.symbols.emplace_back(static_cast<uint16_t>(l), std::string(s));
  }
  return summary;
}

}  // namespace qsig::feeds
