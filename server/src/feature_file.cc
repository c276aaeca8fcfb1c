// WriteFeatureFile: feeds' labelled rows into models/io's feature file writer.
#include "qsig/server/feature_file.h"

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "qsig/models/io/feature_file.h"

namespace qsig::server {

absl::Status WriteFeatureFile(const FeatureFileOptions& options) {
  if (options.output_csv.empty() && options.output_binary.empty()) {
    return absl::InvalidArgumentError(
        "FeatureFileOptions.output_csv and output_binary are both empty; set a file path");
  }
  absl::StatusOr<std::vector<std::string>> names = feeds::LabelledFeatureNames(options.source);
  if (!names.ok()) return names.status();
  auto out = models::io::FeatureFileWriter::Open(options.output_csv, options.output_binary, *names,
                                                 options.source.horizon);
  if (!out.ok()) return out.status();
  models::io::FeatureFileWriter& writer = **out;
  auto summary =
      feeds::GenerateLabelledFeatures(options.source, [&writer](const feeds::LabelledRow& row) {
        const feeds::FeatureVector& fv = row.fv;
        models::io::FeatureRecord rec;
        rec.locate = fv.locate;
        rec.symbol = row.symbol;
        rec.msg_seq = fv.msg_seq;
        rec.exchange_ts_ns = fv.exchange_ts_ns;
        rec.mid = fv.mid_price;
        rec.flags = fv.flags;
        rec.values = std::span<const float>(fv.values, static_cast<size_t>(fv.n_features));
        rec.label = row.label;
        writer.Write(rec);
      });
  if (!summary.ok()) return summary.status();
  return writer.Close(summary->symbols);
}

}  // namespace qsig::server
