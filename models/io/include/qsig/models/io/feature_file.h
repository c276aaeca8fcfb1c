// The feature file: the one contract between `qsig features` (server/commands writes the rows
// feeds::GenerateLabelledFeatures produces) and everything that reads it (models/io's feature
// tables, the model commands, training), read and written here so that no two copies of the
// format can drift.
//
// Besides these two, ReadFeatureTable(path, TableOptions) reads the tables researchers keep:
//   - a plain CSV whose header names the columns: the feature columns are matched by name
//     (TableOptions::features; other columns are ignored), an optional `label` column, optional
//     instrument and time columns (TableOptions::instrument_col / time_col; without an instrument
//     column the rows are one instrument, in time order);
//   - NumPy .npy (2-D float32 / float64, columns in the model's feature order) and .npz (arrays
//     `x` and optional `y`, stored or deflated).
// A missing column, a wrong width or a non-finite feature value is an error naming the column
// and row. Reads are bounded (TableOptions::max_bytes); hostile files get errors, not crashes.
//
// CSV: header `locate,symbol,msg_seq,exchange_ts_ns,mid,<feature names...>,label`; one row per
// feature vector; label empty or non-numeric = none (NaN).
// Binary (little-endian, fixed-size records; feeds/README.md "Binary feature file"):
//   "QSIGFEAT" u32 version=1 u32 n_features u32 horizon u32 record_size u64 record_count
//   n_features x (u16 length, name bytes)
//   record_count x {u64 msg_seq, i64 exchange_ts_ns, f64 mid, u16 locate, u16 n_features,
//                   u32 flags, f32 values[n_features], f32 label}
//   "SYMS" u32 count, count x (u16 locate, 8 bytes symbol, space-padded)
// Thread-safety: a writer is used by one thread; the readers are reentrant.
#pragma once

#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qsig::models::io {

// One row as written.
struct FeatureRecord {
  uint16_t locate = 0;
  std::string_view symbol;  // CSV only.
  uint64_t msg_seq = 0;
  int64_t exchange_ts_ns = 0;
  double mid = 0;
  uint32_t flags = 0;  // Binary only.
  std::span<const float> values;
  double label = 0;
};

// Writes the CSV and/or the binary file ("" = that one not written), rows in the order given.
class FeatureFileWriter {
 public:
  // Opens the outputs and writes their headers; an error names the path.
  static absl::StatusOr<std::unique_ptr<FeatureFileWriter>> Open(
      const std::string& csv_path, const std::string& binary_path,
      const std::vector<std::string>& names, int horizon);
  ~FeatureFileWriter();

  void Write(const FeatureRecord& record);
  uint64_t written() const { return written_; }
  // Appends the binary file's symbol table, fills in its record count and closes both files;
  // an error names the file that failed.
  absl::Status Close(const std::vector<std::pair<uint16_t, std::string>>& symbols);

 private:
  FeatureFileWriter() = default;
  struct Output {
    std::string path;
    std::FILE* file = nullptr;
    std::vector<char> buffer;  // Outlives the FILE that uses it.
  };
  Output csv_, bin_;
  uint64_t written_ = 0;
};

// A feature file read back, one column per field (CSV files carry no flags or horizon: 0).
struct FeatureTable {
  std::vector<std::string> feature_names;
  int horizon = 0;
  std::vector<uint32_t> locate;
  std::vector<uint64_t> msg_seq;
  std::vector<int64_t> exchange_ts_ns;
  std::vector<double> mid;  // NaN where a CSV cell is not a number.
  std::vector<uint32_t> flags;
  std::vector<float> values;  // rows() x feature_names.size().
  std::vector<float> labels;  // NaN where the file has none.
  std::vector<int64_t> prev;  // Previous row of the same locate, -1 for the first.
  std::vector<std::pair<uint16_t, std::string>> symbols;  // Binary: its symbol table.
  // "features csv", "features binary", "csv", "npy" or "npz".
  std::string format;
  // .npy / .npz: the columns are in the model's feature order, unnamed (feature_names holds
  // f0, f1, ... and MapColumns maps them by position, checking the width).
  bool positional = false;
  size_t rows() const { return locate.size(); }
};

// How to read a table that is not a `qsig features` file.
struct TableOptions {
  // Plain CSV: the model's feature names. Non-empty and all in the header: exactly these
  // columns are read. Otherwise every column other than the label, instrument and time columns
  // whose first value is a number is read as a feature (MapColumns then names what is missing).
  std::vector<std::string> features;
  std::string instrument_col;  // Plain CSV: the instrument column ("" = one instrument).
  std::string time_col;        // Plain CSV: the time column (rows are stably sorted by it).
  std::string label_col = "label";
  size_t max_rows = std::numeric_limits<size_t>::max();
  uint64_t max_bytes = uint64_t{4} << 30;  // Files (or npz members) larger than this: an error.
};

// Up to `max_rows` data rows. Errors name the file (and for a CSV the line and column).
absl::StatusOr<FeatureTable> ReadFeatureCsv(const std::string& path,
                                            size_t max_rows = std::numeric_limits<size_t>::max());
absl::StatusOr<FeatureTable> ReadFeatureBinary(
    const std::string& path, size_t max_rows = std::numeric_limits<size_t>::max());
// Either format, told apart by the binary magic.
absl::StatusOr<FeatureTable> ReadFeatureTable(const std::string& path,
                                              size_t max_rows = std::numeric_limits<size_t>::max());
// Any of the formats: a `qsig features` binary (magic) or CSV (its fixed header), .npy / .npz
// (magic), otherwise a plain CSV.
absl::StatusOr<FeatureTable> ReadFeatureTable(const std::string& path, const TableOptions& o);
absl::StatusOr<FeatureTable> ReadPlainCsv(const std::string& path, const TableOptions& o);
absl::StatusOr<FeatureTable> ReadNpy(const std::string& path, const TableOptions& o);
absl::StatusOr<FeatureTable> ReadNpz(const std::string& path, const TableOptions& o);
// Parses one .npy image (as in a file or an .npz member) into a row-major float matrix; `what`
// names it in errors. Labels may be 1-D (cols = 1).
struct NpyArray {
  size_t rows = 0, cols = 0;
  bool one_dim = false;
  std::vector<double> values;
};
absl::StatusOr<NpyArray> ParseNpy(std::string_view bytes, const std::string& what);

}  // namespace qsig::models::io
