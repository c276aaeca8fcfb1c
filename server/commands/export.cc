// `qsig export --onnx-qdq`: a .qsig artifact as a QDQ ONNX model (models::io::ExportOnnxQdq).
#include <iostream>
#include <memory>
#include <string>

#include "command.h"
#include "qsig/commands/model_commands.h"
#include "qsig/models/io/onnx_export.h"

namespace qsig::commands {

absl::StatusOr<ExportSummary> RunExportOnnxQdq(const ExportOptions& o) {
  std::ostream& log = o.log != nullptr ? *o.log : std::cout;
  auto sum = models::io::ExportOnnxQdq(o.artifact_path, o.output_path);
  if (!sum.ok()) return sum.status();
  log << "export: " << sum->model_name << " (" << sum->int8_precision << ") -> " << o.output_path
      << ": QDQ ONNX, opset " << sum->opset << ", " << sum->nodes << " nodes, " << sum->bytes
      << " bytes\n";
  for (const std::string& l : sum->layers) log << "  " << l << "\n";
  return sum;
}

Command AddExportCommand(CLI::App& app) {
  auto eo = std::make_shared<ExportOptions>();
  CLI::App* sub = app.add_subcommand("export", "Export a .qsig artifact as a QDQ ONNX model");
  sub->add_option("--onnx-qdq", eo->artifact_path, "Artifact to export (.qsig, MLP)")->required();
  sub->add_option("-o,--output", eo->output_path, "ONNX file to write")->required();
  return {sub, [eo] {
            auto r = RunExportOnnxQdq(*eo);
            return r.ok() ? 0 : Fail("qsig", "export", r.status());
          }};
}

}  // namespace qsig::commands
