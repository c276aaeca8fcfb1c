// The tables researchers keep (qsig/models/io/feature_file.h): plain CSV with a header, NumPy
// .npy and .npz. Cold path; every size read from a file is checked before it is used.
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <numeric>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "qsig/models/io/feature_file.h"

namespace qsig::models::io {
namespace {

constexpr char kNpyMagic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};
constexpr char kZipMagic[4] = {'P', 'K', '\x03', '\x04'};

absl::StatusOr<std::string> ReadBounded(const std::string& path, uint64_t max_bytes) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open feature file"));
  const std::streamoff size = in.tellg();
  if (size < 0 || static_cast<uint64_t>(size) > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(path, ": ", size, " bytes, more than the ",
                                                     max_bytes, " a feature file may have"));
  }
  std::string bytes(static_cast<size_t>(size), '\0');
  in.seekg(0);
  if (!in.read(bytes.data(), size)) {
    return absl::DataLossError(absl::StrCat(path, ": read failed"));
  }
  return bytes;
}

bool ParseDouble(absl::string_view s, double& v) {
  s = absl::StripAsciiWhitespace(s);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec == std::errc() && r.ptr == s.data() + s.size()) return true;
  // pandas writes nan/inf as these; they parse (and are then refused as non-finite).
  const std::string l = absl::AsciiStrToLower(s);
  if (l == "nan" || l == "-nan") {
    v = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  if (l == "inf" || l == "-inf" || l == "infinity" || l == "-infinity") {
    v = l[0] == '-' ? -INFINITY : INFINITY;
    return true;
  }
  return false;
}

// A float32 feature value, or an error naming the column and row (1-based data row).
absl::Status CheckFeature(const std::string& path, const std::string& column, size_t row,
                          double v) {
  if (!std::isfinite(v) || std::fabs(v) > std::numeric_limits<float>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": row ", row, ", column '", column,
                                                   "': value ", v,
                                                   " is not a finite float32 (features must be)"));
  }
  return absl::OkStatus();
}

void LinkRows(FeatureTable& t) {
  std::map<uint32_t, int64_t> last;
  t.prev.clear();
  for (size_t r = 0; r < t.rows(); ++r) {
    auto [it, inserted] = last.try_emplace(t.locate[r], -1);
    t.prev.push_back(it->second);
    it->second = static_cast<int64_t>(r);
  }
}

// One instrument, rows in order: the layout of .npy / .npz tables.
FeatureTable PositionalTable(const NpyArray& x, const std::vector<float>& labels) {
  FeatureTable t;
  for (size_t j = 0; j < x.cols; ++j) t.feature_names.push_back(absl::StrCat("f", j));
  t.positional = true;
  t.values.reserve(x.values.size());
  for (double v : x.values) t.values.push_back(static_cast<float>(v));
  t.labels =
      labels.empty() ? std::vector<float>(x.rows, std::numeric_limits<float>::quiet_NaN()) : labels;
  t.locate.assign(x.rows, 0);
  for (size_t r = 0; r < x.rows; ++r) {
    t.msg_seq.push_back(r);
    t.exchange_ts_ns.push_back(static_cast<int64_t>(r));
  }
  t.mid.assign(x.rows, std::numeric_limits<double>::quiet_NaN());
  t.flags.assign(x.rows, 0);
  LinkRows(t);
  return t;
}

absl::Status CheckMatrix(const std::string& path, const NpyArray& x) {
  for (size_t r = 0; r < x.rows; ++r) {
    for (size_t c = 0; c < x.cols; ++c) {
      const absl::Status st = CheckFeature(path, absl::StrCat(c), r + 1, x.values[r * x.cols + c]);
      if (!st.ok()) return st;
    }
  }
  return absl::OkStatus();
}

template <typename T>
T Le(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Inflates a raw deflate stream of exactly `size` bytes.
absl::StatusOr<std::string> Inflate(absl::string_view in, uint64_t size, const std::string& what) {
  std::string out(static_cast<size_t>(size), '\0');
  z_stream z{};
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) {
    return absl::InternalError(absl::StrCat(what, ": zlib inflateInit2 failed"));
  }
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&z, Z_FINISH);
  const uint64_t produced = z.total_out;
  inflateEnd(&z);
  if (rc != Z_STREAM_END || produced != size) {
    return absl::DataLossError(absl::StrCat(what, ": corrupt deflate data (zlib ", rc, ", ",
                                            produced, " of ", size, " bytes)"));
  }
  return out;
}

}  // namespace

absl::StatusOr<NpyArray> ParseNpy(std::string_view bytes, const std::string& what) {
  const absl::string_view b(bytes.data(), bytes.size());
  auto bad = [&](absl::string_view m) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", m));
  };
  if (b.size() < 10 || std::memcmp(b.data(), kNpyMagic, 6) != 0) return bad("not a .npy array");
  const auto* u = reinterpret_cast<const unsigned char*>(b.data());
  const int major = u[6];
  size_t header_len = 0, start = 0;
  if (major == 1) {
    header_len = Le<uint16_t>(u + 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) return bad("truncated .npy header");
    header_len = Le<uint32_t>(u + 8);
    start = 12;
  } else {
    return bad(absl::StrCat("unsupported .npy version ", major));
  }
  if (header_len > 65536 || start + header_len > b.size()) return bad("truncated .npy header");
  const std::string header(b.substr(start, header_len));
  auto field = [&](const std::string& key) -> std::string {
    const size_t k = header.find(absl::StrCat("'", key, "'"));
    if (k == std::string::npos) return "";
    const size_t colon = header.find(':', k);
    if (colon == std::string::npos) return "";
    size_t end = key == "shape" ? header.find(')', colon) : header.find_first_of(",}", colon);
    if (end == std::string::npos) return "";
    if (key == "shape") ++end;
    return std::string(absl::StripAsciiWhitespace(header.substr(colon + 1, end - colon - 1)));
  };
  const std::string descr = field("descr");
  const std::string fortran = field("fortran_order");
  const std::string shape = field("shape");
  int item = 0;
  if (descr == "'<f4'" || descr == "'=f4'") {
    item = 4;
  } else if (descr == "'<f8'" || descr == "'=f8'") {
    item = 8;
  } else {
    return bad(absl::StrCat("dtype ", descr.empty() ? "?" : descr,
                            " is not supported (float32 or float64, little-endian)"));
  }
  if (fortran != "False" && fortran != "True") return bad("no fortran_order in the header");
  if (shape.size() < 2 || shape.front() != '(' || shape.back() != ')') {
    return bad("no shape in the header");
  }
  std::vector<uint64_t> dims;
  for (absl::string_view d : absl::StrSplit(shape.substr(1, shape.size() - 2), ',')) {
    d = absl::StripAsciiWhitespace(d);
    if (d.empty()) continue;
    uint64_t v = 0;
    const auto r = std::from_chars(d.data(), d.data() + d.size(), v);
    if (r.ec != std::errc() || r.ptr != d.data() + d.size()) return bad("bad shape");
    dims.push_back(v);
  }
  NpyArray a;
  if (dims.size() == 2) {
    a.rows = dims[0];
    a.cols = dims[1];
  } else if (dims.size() == 1) {
    a.rows = dims[0];
    a.cols = 1;
    a.one_dim = true;
  } else {
    return bad(absl::StrCat("a ", dims.size(), "-D array; expected 2-D [rows, features]"));
  }
  const uint64_t data_bytes = b.size() - start - header_len;
  if (a.cols != 0 && a.rows > data_bytes / item / a.cols) {
    return bad(absl::StrCat("shape ", shape, " needs more data than the ", data_bytes,
                            " bytes present (truncated?)"));
  }
  const size_t n = a.rows * a.cols;
  if (n * item != data_bytes) {
    return bad(
        absl::StrCat("shape ", shape, " has ", n * item, " bytes of data, found ", data_bytes));
  }
  static_assert(std::endian::native == std::endian::little);
  a.values.resize(n);
  const char* p = b.data() + start + header_len;
  for (size_t i = 0; i < n; ++i) {
    // Fortran order: element i of the file is (i % rows, i / rows).
    const size_t dst = fortran == "True" ? (i % a.rows) * a.cols + i / a.rows : i;
    if (item == 4) {
      float f;
      std::memcpy(&f, p + i * 4, 4);
      a.values[dst] = f;
    } else {
      std::memcpy(&a.values[dst], p + i * 8, 8);
    }
  }
  return a;
}

absl::StatusOr<FeatureTable> ReadNpy(const std::string& path, const TableOptions& o) {
  auto bytes = ReadBounded(path, o.max_bytes);
  if (!bytes.ok()) return bytes.status();
  auto x = ParseNpy(*bytes, path);
  if (!x.ok()) return x.status();
  if (x->one_dim) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": a 1-D array; expected 2-D [rows, features]"));
  }
  if (x->rows == 0) return absl::InvalidArgumentError(absl::StrCat(path, ": no data rows"));
  if (x->rows > o.max_rows) {
    x->rows = o.max_rows;
    x->values.resize(x->rows * x->cols);
  }
  if (absl::Status st = CheckMatrix(path, *x); !st.ok()) return st;
  FeatureTable t = PositionalTable(*x, {});
  t.format = "npy";
  return t;
}

absl::StatusOr<FeatureTable> ReadNpz(const std::string& path, const TableOptions& o) {
  auto file = ReadBounded(path, o.max_bytes);
  if (!file.ok()) return file.status();
  const std::string& z = *file;
  auto bad = [&](absl::string_view m) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", m));
  };
  const auto* u = reinterpret_cast<const unsigned char*>(z.data());
  // End of central directory: 22 bytes + a comment of at most 65535.
  if (z.size() < 22) return bad("not a zip (.npz) file");
  size_t eocd = std::string::npos;
  for (size_t i = z.size() - 22 + 1; i-- > 0 && z.size() - i <= 22 + 65535;) {
    if (Le<uint32_t>(u + i) == 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd == std::string::npos) return bad("no zip end-of-central-directory (truncated .npz?)");
  const uint16_t entries = Le<uint16_t>(u + eocd + 10);
  const uint64_t cd_size = Le<uint32_t>(u + eocd + 12);
  const uint64_t cd_off = Le<uint32_t>(u + eocd + 16);
  if (cd_off > eocd || cd_size > eocd - cd_off) return bad("corrupt zip central directory");
  std::map<std::string, std::string> members;  // "x" / "y" -> .npy bytes.
  size_t at = cd_off;
  for (uint16_t e = 0; e < entries; ++e) {
    if (at + 46 > eocd || Le<uint32_t>(u + at) != 0x02014b50) {
      return bad("corrupt zip central directory entry");
    }
    const uint16_t method = Le<uint16_t>(u + at + 10);
    uint64_t csize = Le<uint32_t>(u + at + 20);
    uint64_t usize = Le<uint32_t>(u + at + 24);
    const uint16_t name_len = Le<uint16_t>(u + at + 28);
    const uint16_t extra_len = Le<uint16_t>(u + at + 30);
    const uint16_t comment_len = Le<uint16_t>(u + at + 32);
    uint64_t local = Le<uint32_t>(u + at + 42);
    if (at + 46 + name_len + extra_len + comment_len > eocd) return bad("corrupt zip entry");
    const std::string name(z.data() + at + 46, name_len);
    // Zip64 sizes / offset live in extra field 0x0001, in this order, when the 32-bit ones are
    // all ones.
    for (size_t x = at + 46 + name_len; x + 4 <= at + 46 + name_len + extra_len;) {
      const uint16_t id = Le<uint16_t>(u + x);
      const uint16_t len = Le<uint16_t>(u + x + 2);
      if (x + 4 + len > at + 46 + name_len + extra_len) break;
      if (id == 0x0001) {
        size_t p = x + 4;
        auto take = [&](uint64_t& v) {
          if (v == 0xffffffffu && p + 8 <= x + 4 + len) {
            v = Le<uint64_t>(u + p);
            p += 8;
          }
        };
        take(usize);
        take(csize);
        take(local);
      }
      x += 4 + len;
    }
    at += 46 + name_len + extra_len + comment_len;
    if (name != "x.npy" && name != "y.npy") continue;
    if (usize > o.max_bytes) return bad(absl::StrCat(name, ": ", usize, " bytes uncompressed"));
    if (local + 30 > z.size() || Le<uint32_t>(u + local) != 0x04034b50) {
      return bad(absl::StrCat(name, ": corrupt local header"));
    }
    const uint64_t data = local + 30 + Le<uint16_t>(u + local + 26) + Le<uint16_t>(u + local + 28);
    if (data > z.size() || csize > z.size() - data) {
      return bad(absl::StrCat(name, ": data past the end of the file (truncated?)"));
    }
    const absl::string_view raw(z.data() + data, csize);
    const std::string what = absl::StrCat(path, ": ", name);
    if (method == 0) {
      if (csize != usize) return bad(absl::StrCat(name, ": stored sizes disagree"));
      members[name.substr(0, 1)] = std::string(raw);
    } else if (method == 8) {
      auto inflated = Inflate(raw, usize, what);
      if (!inflated.ok()) return inflated.status();
      members[name.substr(0, 1)] = *std::move(inflated);
    } else {
      return bad(absl::StrCat(name, ": zip compression method ", method,
                              " is not supported (stored or deflate: np.savez / "
                              "np.savez_compressed)"));
    }
  }
  if (!members.contains("x")) {
    return bad("no array 'x' (save the features as np.savez(path, x=features, y=labels))");
  }
  auto x = ParseNpy(members["x"], absl::StrCat(path, ": x"));
  if (!x.ok()) return x.status();
  if (x->one_dim) return bad("x is 1-D; expected 2-D [rows, features]");
  if (x->rows == 0) return bad("x has no rows");
  std::vector<float> labels;
  if (members.contains("y")) {
    auto y = ParseNpy(members["y"], absl::StrCat(path, ": y"));
    if (!y.ok()) return y.status();
    if (y->cols != 1 || y->rows != x->rows) {
      return bad(absl::StrCat("y has shape [", y->rows, ", ", y->cols, "]; expected [", x->rows,
                              "] or [", x->rows, ", 1] (one label per row of x)"));
    }
    for (double v : y->values) labels.push_back(static_cast<float>(v));
  }
  if (x->rows > o.max_rows) {
    x->rows = o.max_rows;
    x->values.resize(x->rows * x->cols);
    if (!labels.empty()) labels.resize(x->rows);
  }
  if (absl::Status st = CheckMatrix(path, *x); !st.ok()) return st;
  FeatureTable t = PositionalTable(*x, labels);
  t.format = "npz";
  return t;
}

absl::StatusOr<FeatureTable> ReadPlainCsv(const std::string& path, const TableOptions& o) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open feature file"));
  auto bad = [&](absl::string_view m) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", m));
  };
  std::string line;
  if (!std::getline(in, line)) return bad("empty file (no header)");
  if (line.size() > (1 << 20)) return bad("header line longer than 1 MiB");
  if (!line.empty() && line.back() == '\r') line.pop_back();
  std::vector<std::string> header;
  for (absl::string_view h : absl::StrSplit(line, ',')) {
    h = absl::StripAsciiWhitespace(h);
    if (h.size() >= 2 && h.front() == '"' && h.back() == '"') h = h.substr(1, h.size() - 2);
    header.emplace_back(h);
  }
  std::map<std::string, int> index;
  for (size_t j = 0; j < header.size(); ++j) {
    if (!index.emplace(header[j], static_cast<int>(j)).second && !header[j].empty()) {
      return bad(absl::StrCat("header names column '", header[j], "' twice"));
    }
  }
  auto column = [&](const std::string& name, const char* flag) -> absl::StatusOr<int> {
    if (name.empty()) return -1;
    auto it = index.find(name);
    if (it == index.end()) {
      return bad(absl::StrCat(flag, " column '", name, "' is not in the header (",
                              absl::StrJoin(header, ","), ")"));
    }
    return it->second;
  };
  auto inst = column(o.instrument_col, "--instrument-col");
  if (!inst.ok()) return inst.status();
  auto time = column(o.time_col, "--time-col");
  if (!time.ok()) return time.status();
  const auto label_it = index.find(o.label_col);
  const int label = label_it == index.end() ? -1 : label_it->second;

  std::vector<std::string> lines;  // Read the data rows first: feature detection looks at row 1.
  size_t bytes = line.size();
  while (lines.size() < o.max_rows && std::getline(in, line)) {
    bytes += line.size() + 1;
    if (bytes > o.max_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat(path, ": more than ", o.max_bytes, " bytes"));
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    lines.push_back(std::move(line));
  }
  if (lines.empty()) return bad("no data rows");
  auto split = [](const std::string& l) {
    std::vector<absl::string_view> cells;
    for (size_t at = 0;;) {
      const size_t comma = l.find(',', at);
      cells.emplace_back(l.data() + at, (comma == std::string::npos ? l.size() : comma) - at);
      if (comma == std::string::npos) break;
      at = comma + 1;
    }
    return cells;
  };
  // Feature columns: the model's names when all present, else every numeric column.
  std::vector<int> feat;
  bool all_named = !o.features.empty();
  for (const std::string& f : o.features) all_named = all_named && index.contains(f);
  FeatureTable t;
  t.format = "csv";
  if (all_named) {
    for (const std::string& f : o.features) feat.push_back(index[f]);
  } else {
    const std::vector<absl::string_view> first = split(lines[0]);
    for (size_t j = 0; j < header.size() && j < first.size(); ++j) {
      const int c = static_cast<int>(j);
      double v;
      if (c == label || c == *inst || c == *time || !ParseDouble(first[j], v)) continue;
      feat.push_back(c);
    }
    if (feat.empty()) return bad("no numeric feature columns in the first data row");
  }
  for (int c : feat) t.feature_names.push_back(header[static_cast<size_t>(c)]);
  const size_t nf = feat.size();
  std::map<std::string, uint32_t, std::less<>> instruments;
  std::vector<double> times;
  t.values.reserve(lines.size() * nf);
  for (size_t r = 0; r < lines.size(); ++r) {
    const std::vector<absl::string_view> cells = split(lines[r]);
    const size_t row = r + 1;  // Data row, 1-based (file line row + 1).
    if (cells.size() != header.size()) {
      return bad(absl::StrCat("row ", row, " (line ", row + 1, "): ", cells.size(),
                              " columns, the header has ", header.size()));
    }
    for (size_t k = 0; k < nf; ++k) {
      const std::string& name = t.feature_names[k];
      double v = 0;
      if (!ParseDouble(cells[static_cast<size_t>(feat[k])], v)) {
        return bad(absl::StrCat("row ", row, ", column '", name, "': '",
                                cells[static_cast<size_t>(feat[k])].substr(0, 40),
                                "' is not a number"));
      }
      if (absl::Status st = CheckFeature(path, name, row, v); !st.ok()) return st;
      t.values.push_back(static_cast<float>(v));
    }
    double y = std::numeric_limits<double>::quiet_NaN();
    if (label >= 0 && !ParseDouble(cells[static_cast<size_t>(label)], y)) {
      y = std::numeric_limits<double>::quiet_NaN();  // Empty label: none.
    }
    t.labels.push_back(static_cast<float>(y));
    uint32_t locate = 0;
    if (*inst >= 0) {
      const absl::string_view s = absl::StripAsciiWhitespace(cells[static_cast<size_t>(*inst)]);
      auto it = instruments.find(s);
      if (it == instruments.end()) {
        if (instruments.size() >= 65535) return bad("more than 65535 instruments");
        const auto id = static_cast<uint32_t>(instruments.size());
        it = instruments.emplace(std::string(s), id).first;
        t.symbols.emplace_back(static_cast<uint16_t>(id), std::string(s));
      }
      locate = it->second;
    }
    t.locate.push_back(locate);
    double ts = static_cast<double>(r);
    if (*time >= 0 && !ParseDouble(cells[static_cast<size_t>(*time)], ts)) {
      return bad(absl::StrCat("row ", row, ", column '", o.time_col, "': '",
                              cells[static_cast<size_t>(*time)].substr(0, 40),
                              "' is not a number (a time column holds numbers, e.g. ns)"));
    }
    times.push_back(ts);
    t.msg_seq.push_back(r);
    t.exchange_ts_ns.push_back(static_cast<int64_t>(ts));
    const auto mid_it = index.find("mid");
    double mid = std::numeric_limits<double>::quiet_NaN();
    if (mid_it != index.end()) ParseDouble(cells[static_cast<size_t>(mid_it->second)], mid);
    t.mid.push_back(mid);
    t.flags.push_back(0);
  }
  if (*time >= 0 && !std::is_sorted(times.begin(), times.end())) {
    // Time order: a stable sort by the time column keeps ties in file order.
    std::vector<size_t> order(times.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return times[a] < times[b]; });
    FeatureTable s = t;
    s.values.clear();
    for (size_t i = 0; i < order.size(); ++i) {
      const size_t r = order[i];
      s.values.insert(s.values.end(), t.values.begin() + r * nf, t.values.begin() + (r + 1) * nf);
      s.labels[i] = t.labels[r];
      s.locate[i] = t.locate[r];
      s.msg_seq[i] = t.msg_seq[r];
      s.exchange_ts_ns[i] = t.exchange_ts_ns[r];
      s.mid[i] = t.mid[r];
    }
    t = std::move(s);
  }
  LinkRows(t);
  return t;
}

absl::StatusOr<FeatureTable> ReadFeatureTable(const std::string& path, const TableOptions& o) {
  char magic[8] = {};
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open feature file"));
    in.read(magic, sizeof magic);
  }
  if (std::memcmp(magic, kNpyMagic, sizeof kNpyMagic) == 0) return ReadNpy(path, o);
  if (std::memcmp(magic, kZipMagic, sizeof kZipMagic) == 0) return ReadNpz(path, o);
  if (std::memcmp(magic, "QSIGFEAT", 8) == 0) return ReadFeatureTable(path, o.max_rows);
  {
    std::ifstream in(path);
    std::string first;
    std::getline(in, first, '\n');
    if (first.rfind("locate,symbol,msg_seq,exchange_ts_ns,mid,", 0) == 0) {
      return ReadFeatureTable(path, o.max_rows);
    }
  }
  return ReadPlainCsv(path, o);
}

}  // namespace qsig::models::io
