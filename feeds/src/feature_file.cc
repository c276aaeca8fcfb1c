// WriteFeatureFile: simulator or capture -> FeedProcessor in-process -> labelled feature rows
// as CSV and/or the compact binary format; ReadFeatureFile reads the binary format back.
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

constexpr char kMagic[8] = {'Q', 'S', 'I', 'G', 'F', 'E', 'A', 'T'};
constexpr uint32_t kVersion = 1;
constexpr size_t kRecordFixed = 8 + 8 + 8 + 2 + 2 + 4;  // Before values.
constexpr long kRecordCountOffset = 8 + 4 * 4;

using File = std::unique_ptr<std::FILE, int (*)(std::FILE*)>;

template <typename T>
void Put(std::FILE* f, T v) {
  std::fwrite(&v, sizeof v, 1, f);  // Little-endian host (static_assert in endian.h).
}

// Buffers rows until their label (the mid `horizon` updates later, same instrument) is known,
// and writes them in arrival order so the file is a time series.
class LabellingSink : public FeatureSink {
 public:
  LabellingSink(const FeedProcessor& feed, int horizon, std::FILE* csv, std::FILE* bin)
      : feed_(feed),
        horizon_(static_cast<size_t>(horizon)),
        csv_(csv),
        bin_(bin),
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
  uint64_t written() const { return written_; }

 private:
  struct Row {
    FeatureVector fv;
    double label;
    bool labelled;
  };

  void Write(const Row& r) {
    const FeatureVector& fv = r.fv;
    ++written_;
    if (csv_ != nullptr) {
      const std::string_view sym = feed_.symbol(fv.locate);
      std::fprintf(csv_, "%u,%.*s,%llu,%lld,%.4f", static_cast<unsigned>(fv.locate),
                   static_cast<int>(sym.size()), sym.data(),
                   static_cast<unsigned long long>(fv.msg_seq),
                   static_cast<long long>(fv.exchange_ts_ns), fv.mid_price);
      for (int i = 0; i < fv.n_features; ++i) std::fprintf(csv_, ",%.7g", fv.values[i]);
      std::fprintf(csv_, ",%.6g\n", r.label);
    }
    if (bin_ != nullptr) {
      Put(bin_, fv.msg_seq);
      Put(bin_, fv.exchange_ts_ns);
      Put(bin_, fv.mid_price);
      Put(bin_, fv.locate);
      Put(bin_, fv.n_features);
      Put(bin_, fv.flags);
      std::fwrite(fv.values, sizeof(float), static_cast<size_t>(fv.n_features), bin_);
      Put(bin_, static_cast<float>(r.label));
    }
  }

  const FeedProcessor& feed_;
  size_t horizon_;
  std::FILE* csv_;
  std::FILE* bin_;
  std::vector<std::deque<uint64_t>> pending_by_locate_;  // Global row ids awaiting a label.
  std::deque<Row> rows_;
  uint64_t first_row_ = 0;  // Global id of rows_.front().
  uint64_t written_ = 0;
};

absl::StatusOr<File> OpenForWrite(const std::string& path, std::vector<char>& buffer) {
  File f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) {
    return absl::NotFoundError(
        internal::Cat("cannot open '", path, "' for writing: ", std::strerror(errno)));
  }
  buffer.resize(1 << 16);
  std::setvbuf(f.get(), buffer.data(), _IOFBF, buffer.size());
  return f;
}

absl::Status Finish(File f, const std::string& path) {
  std::FILE* raw = f.release();
  if (raw == nullptr) return absl::OkStatus();
  const bool bad = std::ferror(raw) != 0;
  if (std::fclose(raw) != 0 || bad) {
    return absl::DataLossError(
        internal::Cat("writing '", path, "' failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

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

  // Buffers outlive the FILEs that use them.
  std::vector<char> csv_buffer, bin_buffer;
  File csv(nullptr, &std::fclose), bin(nullptr, &std::fclose);
  if (!options.output_csv.empty()) {
    auto f = OpenForWrite(options.output_csv, csv_buffer);
    if (!f.ok()) return f.status();
    csv = std::move(*f);
    std::fputs("locate,symbol,msg_seq,exchange_ts_ns,mid", csv.get());
    for (const std::string& name : *names) std::fprintf(csv.get(), ",%s", name.c_str());
    std::fputs(",label\n", csv.get());
  }
  if (!options.output_binary.empty()) {
    auto f = OpenForWrite(options.output_binary, bin_buffer);
    if (!f.ok()) return f.status();
    bin = std::move(*f);
    std::fwrite(kMagic, 1, sizeof kMagic, bin.get());
    Put(bin.get(), kVersion);
    Put(bin.get(), static_cast<uint32_t>(names->size()));
    Put(bin.get(), static_cast<uint32_t>(options.horizon));
    Put(bin.get(), static_cast<uint32_t>(kRecordFixed + 4 * names->size() + 4));
    Put(bin.get(), uint64_t{0});  // Record count, patched at the end.
    for (const std::string& name : *names) {
      Put(bin.get(), static_cast<uint16_t>(name.size()));
      std::fwrite(name.data(), 1, name.size(), bin.get());
    }
  }

  FeedProcessor feed(options.feed);
  LabellingSink sink(feed, options.horizon, csv.get(), bin.get());
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

  if (bin) {
    std::FILE* f = bin.get();
    std::fwrite("SYMS", 1, 4, f);
    std::vector<std::pair<uint16_t, std::string_view>> syms;
    for (int l = 1; l <= feed.max_instruments(); ++l) {
      const std::string_view s = feed.symbol(static_cast<uint16_t>(l));
      if (!s.empty()) syms.emplace_back(static_cast<uint16_t>(l), s);
    }
    Put(f, static_cast<uint32_t>(syms.size()));
    for (const auto& [locate, s] : syms) {
      char padded[8];
      std::memset(padded, ' ', sizeof padded);
      std::memcpy(padded, s.data(), std::min<size_t>(s.size(), 8));
      Put(f, locate);
      std::fwrite(padded, 1, sizeof padded, f);
    }
    std::fflush(f);
    std::fseek(f, kRecordCountOffset, SEEK_SET);
    Put(f, sink.written());
  }
  absl::Status st = Finish(std::move(csv), options.output_csv);
  absl::Status st2 = Finish(std::move(bin), options.output_binary);
  return st.ok() ? st2 : st;
}

absl::StatusOr<FeatureFileContents> ReadFeatureFile(const std::string& path) {
  File f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) {
    return absl::NotFoundError(internal::Cat("cannot open '", path, "': ", std::strerror(errno)));
  }
  auto bad = [&](std::string_view what) {
    return absl::DataLossError(internal::Cat("feature file '", path, "': ", what));
  };
  auto get = [&](void* p, size_t n) { return std::fread(p, 1, n, f.get()) == n; };
  char magic[8];
  uint32_t version = 0, n_features = 0, horizon = 0, record_size = 0;
  uint64_t count = 0;
  if (!get(magic, 8) || std::memcmp(magic, kMagic, 8) != 0) return bad("not a QSIGFEAT file");
  if (!get(&version, 4) || version != kVersion) return bad("unsupported version");
  if (!get(&n_features, 4) || !get(&horizon, 4) || !get(&record_size, 4) || !get(&count, 8)) {
    return bad("truncated header");
  }
  if (n_features > static_cast<uint32_t>(kMaxFeatures) ||
      record_size != kRecordFixed + 4 * n_features + 4) {
    return bad("inconsistent header");
  }
  FeatureFileContents out;
  out.horizon = static_cast<int>(horizon);
  for (uint32_t i = 0; i < n_features; ++i) {
    uint16_t len = 0;
    if (!get(&len, 2)) return bad("truncated names");
    std::string name(len, '\0');
    if (!get(name.data(), len)) return bad("truncated names");
    out.names.push_back(std::move(name));
  }
  out.rows.reserve(count);
  for (uint64_t r = 0; r < count; ++r) {
    FeatureFileRow row;
    FeatureVector& fv = row.fv;
    if (!get(&fv.msg_seq, 8) || !get(&fv.exchange_ts_ns, 8) || !get(&fv.mid_price, 8) ||
        !get(&fv.locate, 2) || !get(&fv.n_features, 2) || !get(&fv.flags, 4) ||
        fv.n_features != n_features || !get(fv.values, 4 * n_features) || !get(&row.label, 4)) {
      return bad(internal::Cat("truncated or inconsistent record ", r));
    }
    out.rows.push_back(row);
  }
  char syms[4];
  uint32_t n_syms = 0;
  if (!get(syms, 4) || std::memcmp(syms, "SYMS", 4) != 0 || !get(&n_syms, 4)) {
    return bad("missing symbol table");
  }
  for (uint32_t i = 0; i < n_syms; ++i) {
    uint16_t locate = 0;
    char s[8];
    if (!get(&locate, 2) || !get(s, 8)) return bad("truncated symbol table");
    std::string_view sv(s, 8);
    while (!sv.empty() && sv.back() == ' ') sv.remove_suffix(1);
    out.symbols.emplace_back(locate, std::string(sv));
  }
  return out;
}

}  // namespace qsig::feeds
