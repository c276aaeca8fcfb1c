// The feature file format (qsig/models/io/feature_file.h): writer and both readers.
#include "qsig/models/io/feature_file.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace qsig::models::io {
namespace {

constexpr char kMagic[8] = {'Q', 'S', 'I', 'G', 'F', 'E', 'A', 'T'};
constexpr uint32_t kVersion = 1;
constexpr size_t kRecordFixed = 8 + 8 + 8 + 2 + 2 + 4;  // Before values.
constexpr long kRecordCountOffset = 8 + 4 * 4;
constexpr const char* kFixed[] = {"locate", "symbol", "msg_seq", "exchange_ts_ns", "mid"};

static_assert(std::endian::native == std::endian::little, "the binary format is little-endian");

template <typename T>
void Put(std::FILE* f, T v) {
  std::fwrite(&v, sizeof v, 1, f);
}

template <typename T>
bool Parse(std::string_view s, T& v) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// The previous row of each row's locate (FeatureTable::prev), from the locate column.
void LinkRows(FeatureTable& t) {
  std::map<uint32_t, int64_t> last_of_locate;
  t.prev.clear();
  for (size_t r = 0; r < t.rows(); ++r) {
    auto [it, inserted] = last_of_locate.try_emplace(t.locate[r], -1);
    t.prev.push_back(it->second);
    it->second = static_cast<int64_t>(r);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<FeatureFileWriter>> FeatureFileWriter::Open(
    const std::string& csv_path, const std::string& binary_path,
    const std::vector<std::string>& names, int horizon) {
  std::unique_ptr<FeatureFileWriter> w(new FeatureFileWriter());
  for (auto [out, path] : {std::pair{&w->csv_, &csv_path}, std::pair{&w->bin_, &binary_path}}) {
    if (path->empty()) continue;
    out->path = *path;
    out->file = std::fopen(path->c_str(), "wb");
    if (out->file == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("cannot open '", *path, "' for writing: ", std::strerror(errno)));
    }
    out->buffer.resize(1 << 16);
    std::setvbuf(out->file, out->buffer.data(), _IOFBF, out->buffer.size());
  }
  if (std::FILE* csv = w->csv_.file) {
    std::fputs("locate,symbol,msg_seq,exchange_ts_ns,mid", csv);
    for (const std::string& name : names) std::fprintf(csv, ",%s", name.c_str());
    std::fputs(",label\n", csv);
  }
  if (std::FILE* bin = w->bin_.file) {
    std::fwrite(kMagic, 1, sizeof kMagic, bin);
    Put(bin, kVersion);
    Put(bin, static_cast<uint32_t>(names.size()));
    Put(bin, static_cast<uint32_t>(horizon));
    Put(bin, static_cast<uint32_t>(kRecordFixed + 4 * names.size() + 4));
    Put(bin, uint64_t{0});  // Record count, filled in by Close().
    for (const std::string& name : names) {
      Put(bin, static_cast<uint16_t>(name.size()));
      std::fwrite(name.data(), 1, name.size(), bin);
    }
  }
  return w;
}

FeatureFileWriter::~FeatureFileWriter() {
  for (Output* o : {&csv_, &bin_}) {
    if (o->file != nullptr) std::fclose(o->file);
  }
}

void FeatureFileWriter::Write(const FeatureRecord& r) {
  ++written_;
  if (std::FILE* csv = csv_.file) {
    std::fprintf(csv, "%u,%.*s,%llu,%lld,%.4f", static_cast<unsigned>(r.locate),
                 static_cast<int>(r.symbol.size()), r.symbol.data(),
                 static_cast<unsigned long long>(r.msg_seq),
                 static_cast<long long>(r.exchange_ts_ns), r.mid);
    for (float v : r.values) std::fprintf(csv, ",%.7g", v);
    std::fprintf(csv, ",%.6g\n", r.label);
  }
  if (std::FILE* bin = bin_.file) {
    Put(bin, r.msg_seq);
    Put(bin, r.exchange_ts_ns);
    Put(bin, r.mid);
    Put(bin, r.locate);
    Put(bin, static_cast<uint16_t>(r.values.size()));
    Put(bin, r.flags);
    std::fwrite(r.values.data(), sizeof(float), r.values.size(), bin);
    Put(bin, static_cast<float>(r.label));
  }
}

absl::Status FeatureFileWriter::Close(
    const std::vector<std::pair<uint16_t, std::string>>& symbols) {
  if (std::FILE* f = bin_.file) {
    std::fwrite("SYMS", 1, 4, f);
    Put(f, static_cast<uint32_t>(symbols.size()));
    for (const auto& [locate, s] : symbols) {
      char padded[8];
      std::memset(padded, ' ', sizeof padded);
      std::memcpy(padded, s.data(), std::min<size_t>(s.size(), 8));
      Put(f, locate);
      std::fwrite(padded, 1, sizeof padded, f);
    }
    std::fflush(f);
    std::fseek(f, kRecordCountOffset, SEEK_SET);
    Put(f, written_);
  }
  absl::Status status;
  for (Output* o : {&csv_, &bin_}) {
    std::FILE* raw = o->file;
    o->file = nullptr;
    if (raw == nullptr) continue;
    const bool bad = std::ferror(raw) != 0;
    if ((std::fclose(raw) != 0 || bad) && status.ok()) {
      status = absl::DataLossError(
          absl::StrCat("writing '", o->path, "' failed: ", std::strerror(errno)));
    }
  }
  return status;
}

absl::StatusOr<FeatureTable> ReadFeatureCsv(const std::string& path, size_t max_rows) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open feature file"));
  std::string line;
  if (!std::getline(in, line)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": empty file (no header)"));
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  const std::vector<std::string> header = absl::StrSplit(line, ',');
  bool fixed_ok = header.size() >= 6;
  for (size_t i = 0; fixed_ok && i < 5; ++i) fixed_ok = header[i] == kFixed[i];
  if (!fixed_ok) {
    return absl::InvalidArgumentError(
        absl::StrCat(path,
                     ":1: header must start with locate,symbol,msg_seq,exchange_ts_ns,mid and list "
                     "the features (a `qsig features` CSV), found '",
                     line.substr(0, 120), "'"));
  }
  const bool has_label = header.back() == "label";
  FeatureTable t;
  t.format = "features csv";
  t.feature_names.assign(header.begin() + 5, header.end() - (has_label ? 1 : 0));
  const size_t nf = t.feature_names.size();
  if (nf == 0) return absl::InvalidArgumentError(absl::StrCat(path, ":1: no feature columns"));
  size_t lineno = 1;
  std::vector<std::string_view> cols;
  while (t.rows() < max_rows && std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    cols.clear();
    for (size_t at = 0;;) {
      const size_t comma = line.find(',', at);
      cols.emplace_back(line.data() + at, (comma == std::string::npos ? line.size() : comma) - at);
      if (comma == std::string::npos) break;
      at = comma + 1;
    }
    if (cols.size() != header.size()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", lineno, ": ", cols.size(),
                                                     " columns, the header has ", header.size()));
    }
    uint32_t locate = 0;
    uint64_t seq = 0;
    int64_t ts = 0;
    if (!Parse(cols[0], locate) || !Parse(cols[2], seq) || !Parse(cols[3], ts)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", lineno, ": locate, msg_seq and exchange_ts_ns must be integers"));
    }
    double mid = std::numeric_limits<double>::quiet_NaN();
    if (!Parse(cols[4], mid)) mid = std::numeric_limits<double>::quiet_NaN();
    for (size_t j = 0; j < nf; ++j) {
      float v = 0;
      if (!Parse(cols[5 + j], v)) {
        // from_chars rejects "nan"/"inf" spellings printf may produce; accept them explicitly.
        const std::string s(cols[5 + j]);
        if (s == "nan" || s == "-nan") {
          v = std::numeric_limits<float>::quiet_NaN();
        } else if (s == "inf" || s == "-inf") {
          v = s[0] == '-' ? -INFINITY : INFINITY;
        } else {
          return absl::InvalidArgumentError(absl::StrCat(path, ":", lineno, ": column '",
                                                         t.feature_names[j], "' value '", s,
                                                         "' is not a number"));
        }
      }
      t.values.push_back(v);
    }
    float label = std::numeric_limits<float>::quiet_NaN();
    if (has_label && !cols.back().empty() && !Parse(cols.back(), label)) {
      label = std::numeric_limits<float>::quiet_NaN();
    }
    t.labels.push_back(label);
    t.locate.push_back(locate);
    t.msg_seq.push_back(seq);
    t.exchange_ts_ns.push_back(ts);
    t.mid.push_back(mid);
    t.flags.push_back(0);
  }
  if (t.rows() == 0) return absl::InvalidArgumentError(absl::StrCat(path, ": no data rows"));
  LinkRows(t);
  return t;
}

absl::StatusOr<FeatureTable> ReadFeatureBinary(const std::string& path, size_t max_rows) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) {
    return absl::NotFoundError(absl::StrCat("cannot open '", path, "': ", std::strerror(errno)));
  }
  auto bad = [&](absl::string_view what) {
    return absl::DataLossError(absl::StrCat("feature file '", path, "': ", what));
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
  if (n_features > 0xffff || record_size != kRecordFixed + 4 * n_features + 4) {
    return bad("inconsistent header");
  }
  FeatureTable t;
  t.format = "features binary";
  t.horizon = static_cast<int>(horizon);
  for (uint32_t i = 0; i < n_features; ++i) {
    uint16_t len = 0;
    if (!get(&len, 2)) return bad("truncated names");
    std::string name(len, '\0');
    if (!get(name.data(), len)) return bad("truncated names");
    t.feature_names.push_back(std::move(name));
  }
  std::vector<float> values(n_features);
  for (uint64_t r = 0; r < count; ++r) {
    uint64_t seq = 0;
    int64_t ts = 0;
    double mid = 0;
    uint16_t locate = 0, n = 0;
    uint32_t flags = 0;
    float label = 0;
    if (!get(&seq, 8) || !get(&ts, 8) || !get(&mid, 8) || !get(&locate, 2) || !get(&n, 2) ||
        !get(&flags, 4) || n != n_features || !get(values.data(), 4 * n_features) ||
        !get(&label, 4)) {
      return bad(absl::StrCat("truncated or inconsistent record ", r));
    }
    if (t.rows() >= max_rows) continue;  // Read on: the symbol table follows the records.
    t.msg_seq.push_back(seq);
    t.exchange_ts_ns.push_back(ts);
    t.mid.push_back(mid);
    t.locate.push_back(locate);
    t.flags.push_back(flags);
    t.values.insert(t.values.end(), values.begin(), values.end());
    t.labels.push_back(label);
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
    t.symbols.emplace_back(locate, std::string(sv));
  }
  LinkRows(t);
  return t;
}

absl::StatusOr<FeatureTable> ReadFeatureTable(const std::string& path, size_t max_rows) {
  char magic[8] = {};
  {
    std::ifstream in(path, std::ios::binary);
    in.read(magic, sizeof magic);
  }
  if (std::memcmp(magic, kMagic, sizeof magic) == 0) {
    auto t = ReadFeatureBinary(path, max_rows);
    if (t.ok() && t->rows() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": no data rows"));
    }
    return t;
  }
  return ReadFeatureCsv(path, max_rows);
}

}  // namespace qsig::models::io
