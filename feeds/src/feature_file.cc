// WriteFeatureFile: simulator -> FeedProcessor in-process -> CSV of features with forward labels.
#include <cerrno>
#include <cstdio>
#include <cstring>
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
  LabellingSink(const FeedProcessor& feed, int horizon, std::FILE* out)
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
    const std::string_view sym = feed_.symbol(fv.locate);
    std::fprintf(out_, "%u,%.*s,%llu,%lld,%.4f", static_cast<unsigned>(fv.locate),
                 static_cast<int>(sym.size()), sym.data(),
                 static_cast<unsigned long long>(fv.msg_seq),
                 static_cast<long long>(fv.exchange_ts_ns), fv.mid_price);
    for (int i = 0; i < fv.n_features; ++i) std::fprintf(out_, ",%.7g", fv.values[i]);
    std::fprintf(out_, ",%.6g\n", r.label);
  }

  const FeedProcessor& feed_;
  size_t horizon_;
  std::FILE* out_;
  std::vector<std::deque<uint64_t>> pending_by_locate_;  // Global row ids awaiting a label.
  std::deque<Row> rows_;
  uint64_t first_row_ = 0;  // Global id of rows_.front().
};

}  // namespace

absl::Status WriteFeatureFile(const FeatureFileOptions& options) {
  if (options.output_csv.empty()) {
    return absl::InvalidArgumentError("FeatureFileOptions.output_csv is empty; set a file path");
  }
  if (options.horizon < 1) {
    return absl::InvalidArgumentError(
        internal::Cat("FeatureFileOptions.horizon is ", options.horizon, "; it must be >= 1"));
  }
  std::vector<char> io_buffer(1 << 16);  // Outlives the FILE that uses it.
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> out(std::fopen(options.output_csv.c_str(), "w"),
                                                      &std::fclose);
  if (!out) {
    return absl::NotFoundError(internal::Cat("cannot open '", options.output_csv,
                                             "' for writing: ", std::strerror(errno)));
  }
  std::setvbuf(out.get(), io_buffer.data(), _IOFBF, io_buffer.size());

  std::fputs("locate,symbol,msg_seq,exchange_ts_ns,mid", out.get());
  for (const std::string& name : DefaultFeatureNames())
    std::fprintf(out.get(), ",%s", name.c_str());
  std::fputs(",label\n", out.get());

  FeedProcessor feed(options.feed);
  Simulator sim(options.sim);
  LabellingSink sink(feed, options.horizon, out.get());
  std::vector<uint8_t> packet(65536);
  // First message is sequence 1, so next_sequence() - 1 messages have been produced.
  while (sim.next_sequence() - 1 < options.messages) {
    const size_t n = sim.NextPacket(packet);
    feed.OnDatagram(std::span<const uint8_t>(packet.data(), n), 0, sink);
  }
  std::FILE* f = out.release();
  if (std::ferror(f) != 0 || std::fclose(f) != 0) {
    return absl::DataLossError(
        internal::Cat("writing '", options.output_csv, "' failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace qsig::feeds
