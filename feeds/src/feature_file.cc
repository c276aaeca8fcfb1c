// WriteFeatureFile: simulator or capture -> FeedProcessor in-process -> labelled feature rows,
// written in the feature file format (qsig/base/feature_file.h: the one writer and reader);
// ReadFeatureFile reads the binary format back as feature vectors.
#include "qsig/base/feature_file.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "internal/str.h"
#include "qsig/feeds/feed.h"

namespace qsig::feeds {
namespace {

// Buffers rows until their label (the mid `horizon` updates later, same instrument) is known,
// and writes them in arrival order so the file is a time series.
class LabellingSink : public FeatureSink {
 public:
  LabellingSink(const FeedProcessor& feed, int horizon, base::FeatureFileWriter& out)
      : feed_(feed),
        horizon_(static_cast<size_t>(horizon)),
        out_(out),
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
      Write(rows_.front());
      rows_.pop_front();
      ++first_row_;
    }
  }

 private:
  struct Row {
    FeatureVector fv;
    double label;
    bool labelled;
  };

  void Write(const Row& r) {
    const FeatureVector& fv = r.fv;
    base::FeatureRecord rec;
    rec.locate = fv.locate;
    rec.symbol = feed_.symbol(fv.locate);
    rec.msg_seq = fv.msg_seq;
    rec.exchange_ts_ns = fv.exchange_ts_ns;
    rec.mid = fv.mid_price;
    rec.flags = fv.flags;
    rec.values = std::span<const float>(fv.values, static_cast<size_t>(fv.n_features));
    rec.label = r.label;
    out_.Write(rec);
  }

  const FeedProcessor& feed_;
  size_t horizon_;
  base::FeatureFileWriter& out_;
  std::vector<std::deque<uint64_t>> pending_by_locate_;  // Global row ids awaiting a label.
  std::deque<Row> rows_;
  uint64_t first_row_ = 0;  // Global id of rows_.front().
};

}  // namespace

absl::Status WriteFeatureFile(const FeatureFileOptions& options) {
  if (options.output_csv.empty() && options.output_binary.empty()) {
    return absl::InvalidArgumentError(
        "FeatureFileOptions.output_csv and output_binary are both empty; set a file path");
  }
  if (options.horizon < 1) {
    return absl::InvalidArgumentError(
        internal::Cat("FeatureFileOptions.horizon is ", options.horizon, "; it must be >= 1"));
  }
  absl::StatusOr<std::vector<std::string>> names = FeatureNames(options.feed.features);
  if (!names.ok()) return names.status();
  std::unique_ptr<ReplaySource> replay;
  if (options.replay) {
    auto r = ReplaySource::Open(*options.replay);
    if (!r.ok()) return r.status();
    replay = std::move(*r);
  }

  auto out = base::FeatureFileWriter::Open(options.output_csv, options.output_binary, *names,
                                           options.horizon);
  if (!out.ok()) return out.status();

  FeedProcessor feed(options.feed);
  LabellingSink sink(feed, options.horizon, **out);
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

  std::vector<std::pair<uint16_t, std::string>> symbols;
  for (int l = 1; l <= feed.max_instruments(); ++l) {
    const std::string_view s = feed.symbol(static_cast<uint16_t>(l));
    if (!s.empty()) symbols.emplace_back(static_cast<uint16_t>(l), std::string(s));
  }
  return (*out)->Close(symbols);
}

absl::StatusOr<FeatureFileContents> ReadFeatureFile(const std::string& path) {
  auto t = base::ReadFeatureBinary(path);
  if (!t.ok()) return t.status();
  if (t->feature_names.size() > static_cast<size_t>(kMaxFeatures)) {
    return absl::DataLossError(internal::Cat("feature file '", path, "': inconsistent header"));
  }
  FeatureFileContents out;
  out.names = std::move(t->feature_names);
  out.horizon = t->horizon;
  out.symbols = std::move(t->symbols);
  const size_t nf = out.names.size();
  out.rows.resize(t->rows());
  for (size_t r = 0; r < t->rows(); ++r) {
    FeatureFileRow& row = out.rows[r];
    FeatureVector& fv = row.fv;
    fv.msg_seq = t->msg_seq[r];
    fv.exchange_ts_ns = t->exchange_ts_ns[r];
    fv.mid_price = t->mid[r];
    fv.locate = static_cast<uint16_t>(t->locate[r]);
    fv.n_features = static_cast<uint16_t>(nf);
    fv.flags = t->flags[r];
    std::copy_n(t->values.begin() + static_cast<std::ptrdiff_t>(r * nf), nf, fv.values);
    row.label = t->labels[r];
  }
  return out;
}

}  // namespace qsig::feeds
