// `qsig inspect`: what a model file is; for a .qsig artifact its provenance, calibration and
// whether this build rebuilds the INT8 runtime it validated.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "command.h"
#include "nlohmann/json.hpp"
#include "qsig/commands/model_commands.h"
#include "qsig/models/io/artifact.h"
#include "qsig/models/io/loader.h"
#include "qsig/models/status_macros.h"
#include "qsig/quant/calibration.h"
#include "qsig/quant/isa.h"
#include "qsig/quant/onednn_gemm.h"

namespace qsig::commands {
namespace {

using models::io::LoadAnyModel;
using models::io::LoadedModel;
using namespace models;      // NOLINT: the model types read plainly in command code.
using namespace models::io;  // NOLINT

}  // namespace

absl::StatusOr<InspectReport> RunInspect(const InspectOptions& o) {
  std::ostream& log = o.log != nullptr ? *o.log : std::cout;
  QSIG_ASSIGN_OR_RETURN(LoadedModel lm, LoadAnyModel(o.model_path, o.import));
  const ModelSpec& s = *lm.spec;
  InspectReport rep;
  const KernelReport* kernels = nullptr;  // the INT8 runtime's, if one was built
  std::unique_ptr<Model> int8_model;      // keeps `kernels` alive
  rep.format = lm.format;
  rep.artifact = lm.artifact.has_value();
  const std::vector<std::string> names = QuantizableLayers(s);
  nlohmann::json j;
  const char* arch = ArchName(s.arch);
  std::vector<std::string> shape;
  for (const LstmLayer& l : s.lstm) shape.push_back(absl::StrCat("LSTM(", l.hidden_size, ")"));
  for (const GruLayer& l : s.gru) shape.push_back(absl::StrCat("GRU(", l.hidden_size, ")"));
  for (const LinearLayer& l : s.layers) {
    shape.push_back(absl::StrCat(
        "Linear(", l.in, "->", l.out,
        l.activation == Activation::kNone ? "" : absl::StrCat(", ", ActivationName(l.activation)),
        ")"));
  }
  // Null if the kernel layer's environment is bad (QSIG_MAX_ISA, QSIG_ONEDNN): say which.
  const std::unique_ptr<Model> fp32 = MakeFp32Model(lm.spec);
  if (fp32 == nullptr) {
    QSIG_RETURN_IF_ERROR(quant::EnvMaxIsa().status());
    QSIG_RETURN_IF_ERROR(quant::ActiveOnednnMode().status());
    return absl::InvalidArgumentError(
        absl::StrCat(o.model_path, ": cannot build the model's FP32 runtime"));
  }
  bool normalized = false;
  for (float m : s.feature_mean) normalized = normalized || m != 0.0f;
  for (float v : s.feature_std) normalized = normalized || (v != 0.0f && v != 1.0f);
  nlohmann::json ranges = nlohmann::json::object();
  for (size_t i = 0; i < s.input_ranges.size() && i < names.size(); ++i) {
    if (s.input_ranges[i].set) ranges[names[i]] = {s.input_ranges[i].min, s.input_ranges[i].max};
  }
  j["model"] = {{"path", o.model_path},
                {"format", lm.format},
                {"name", s.name},
                {"arch", arch},
                {"layers", shape},
                {"input_size", s.input_size},
                {"window", s.window},
                {"feature_names", s.feature_names},
                {"normalized", normalized},
                {"input_ranges", ranges},
                {"source_sha256", s.sha256},
                {"fp32_weight_bytes", fp32->weight_bytes()}};
  if (lm.artifact) {
    const Artifact& a = *lm.artifact;
    const Int8Options& io = a.calibration.options;
    nlohmann::json plan = nlohmann::json::object();
    for (size_t i = 0; i < io.layers.size() && i < names.size(); ++i) {
      plan[names[i]] = PrecisionName(io.layers[i]);
    }
    nlohmann::json act = nlohmann::json::array();
    for (const ActivationRange& r : a.activation_ranges) {
      act.push_back({{"tensor", r.tensor},
                     {"min", r.min},
                     {"max", r.max},
                     {"scale", r.params.scale},
                     {"zero_point", r.params.zero_point}});
    }
    const size_t per = static_cast<size_t>(s.window) * s.input_size;
    j["artifact"] = {{"format_version", a.format_version}, {"content_sha256", a.content_sha256},
                     {"qsig_build", a.qsig_build},         {"created_unix_s", a.created_unix_s},
                     {"source_path", a.source_path},       {"source_format", a.source_format}};
    j["calibration"] = {{"method", quant::CalibrationMethodName(io.method)},
                        {"percentile", io.percentile},
                        {"s16_input", io.s16_input},
                        {"fp32_head", io.fp32_head},
                        {"per_feature_input", io.per_feature_input},
                        {"use_source_ranges", io.use_source_ranges},
                        {"reduce_range", io.reduce_range},
                        {"max_rmse", io.max_rmse},
                        {"cell_state", io.cell_state == CellState::kS16 ? "s16" : "fp32"},
                        {"plan", plan.empty() ? nlohmann::json("default") : plan},
                        {"windows_stored", per ? a.calibration.windows.size() / per : 0},
                        {"windows_seen", a.calibration.windows_seen},
                        {"first_ts_ns", a.calibration.first_ts_ns},
                        {"last_ts_ns", a.calibration.last_ts_ns},
                        {"source", a.calibration.source},
                        {"reference_outputs", a.calibration.reference_outputs.size()},
                        {"kernel_isa", a.calibration.kernel_isa}};
    j["activation_ranges"] = act;
    auto built = BuildInt8Model(a);
    rep.verified = built.ok();
    rep.verify_message =
        built.ok()
            ? absl::StrCat("rebuilds the validated INT8 runtime (", (*built)->precision(), ", ",
                           (*built)->weight_bytes(), " weight bytes, kernels ", KernelIsa(), ")")
            : std::string(built.status().message());
    j["verification"] = {{"verified", rep.verified}, {"message", rep.verify_message}};
    if (built.ok()) int8_model = std::move(*built);
    if (int8_model != nullptr && int8_model->kernel_report() != nullptr) {
      kernels = int8_model->kernel_report();
      nlohmann::json shapes = nlohmann::json::array();
      for (const KernelChoice& c : kernels->shapes) {
        shapes.push_back({{"op", c.op},
                          {"use", c.use},
                          {"rows", c.rows},
                          {"cols", c.cols},
                          {"n", c.n},
                          {"qsig_us", c.own_us},
                          {"onednn_us", c.onednn_us},
                          {"onednn_exact", c.exact},
                          {"backend", c.backend},
                          {"reason", c.reason}});
      }
      j["kernels"] = {{"isa", kernels->isa},
                      {"onednn_mode", kernels->onednn_mode},
                      {"chooser_ms", kernels->chooser_ms},
                      {"shapes", shapes},
                      {"notes", kernels->notes}};
    }
  }
  if (!j.contains("kernels")) {
    j["kernels"] = {{"isa", KernelIsa()},
                    {"notes",
                     {"FP32 runtime: qsig kernels for every shape (the per-shape oneDNN chooser "
                      "runs when an INT8 runtime is built: quantize first)"}}};
  }
  rep.json = j.dump(2);
  if (o.json) {
    log << rep.json << "\n";
    return rep;
  }
  log << absl::StrFormat("%s: %s model '%s' (%s)\n", o.model_path, lm.format, s.name, arch);
  log << "  layers      " << absl::StrJoin(shape, " -> ") << "\n";
  log << absl::StrFormat("  input       %d features x window %d%s\n", s.input_size, s.window,
                         normalized ? ", normalized" : "");
  log << "  features    " << absl::StrJoin(s.feature_names, ",") << "\n";
  log << "  source hash " << s.sha256 << "\n";
  if (!ranges.empty()) log << "  input ranges carried by the file: " << ranges.dump() << "\n";
  if (lm.artifact) {
    const Artifact& a = *lm.artifact;
    const auto& c = j["calibration"];
    log << absl::StrFormat("  artifact    format v%u, sha256 %s, built by qsig %s\n",
                           a.format_version, a.content_sha256, a.qsig_build);
    log << absl::StrFormat("  from        %s (%s)\n", a.source_path, a.source_format);
    log << absl::StrFormat(
        "  calibration %s on %zu stored of %llu windows from %s, ts %lld..%lld, reference on %s\n",
        c["method"].get<std::string>(), c["windows_stored"].get<size_t>(),
        static_cast<unsigned long long>(a.calibration.windows_seen),
        a.calibration.source.empty() ? "?" : a.calibration.source,
        static_cast<long long>(a.calibration.first_ts_ns),
        static_cast<long long>(a.calibration.last_ts_ns), a.calibration.kernel_isa);
    log << "  plan        " << c["plan"].dump() << "\n";
    log << "  " << (rep.verified ? "verified    " : "NOT VERIFIED ") << rep.verify_message << "\n";
  }
  log << "  kernels (per GEMM shape: qsig or oneDNN)\n";
  if (kernels != nullptr) {
    log << FormatKernelReport(*kernels, "    ");
  } else {
    log << "    " << j["kernels"]["notes"][0].get<std::string>() << "\n";
  }
  return rep;
}

Command AddInspectCommand(CLI::App& app) {
  auto io = std::make_shared<InspectOptions>();
  CLI::App* sub = app.add_subcommand(
      "inspect", "What a model file is; for a .qsig artifact its provenance and verification");
  sub->add_option("model", io->model_path, "Model file")->required();
  sub->add_flag("--json", io->json, "Print JSON");
  sub->add_option("--window", io->import.window, "Timesteps of an imported recurrent model");
  return {sub, [io] {
            auto r = RunInspect(*io);
            if (!r.ok()) return Fail("qsig", "inspect", r.status());
            return r->artifact && !r->verified ? 1 : 0;
          }};
}

}  // namespace qsig::commands
