// `qsig-torch import`: TorchScript -> qsig's JSON model format, what qsig binaries without
// LibTorch (the server, `qsig predict`, ...) run to load a .pt file
// (models/io/src/torchscript_import_process.cc). Failures exit with kImportCodeBase + the
// absl::StatusCode, so the caller's ImportTorchScript returns the code the in-process importer
// would.
#include <memory>
#include <string>

#include "command.h"
#include "qsig/models/io/import.h"
#include "qsig/models/model_json.h"

namespace qsig::commands {
namespace {

constexpr int kImportCodeBase = 10;

struct ImportFlags {
  std::string model, output;
  models::io::ImportOptions options;
};

int RunImport(const ImportFlags& f) {
  auto spec = models::io::ImportTorchScript(f.model, f.options);
  if (!spec.ok()) {
    Fail("qsig-torch", "import", spec.status());
    return kImportCodeBase + static_cast<int>(spec.status().code());
  }
  auto written = models::WriteModelJson(*spec, f.output);
  return written.ok() ? 0 : Fail("qsig-torch", "import", written.status());
}

}  // namespace

Command AddTorchImportCommand(CLI::App& app) {
  auto f = std::make_shared<ImportFlags>();
  CLI::App* sub = app.add_subcommand("import", "TorchScript to qsig's JSON model format");
  sub->add_option("--model", f->model, "TorchScript file (torch.jit.save)")->required();
  sub->add_option("--window", f->options.window, "Timesteps of a recurrent model");
  sub->add_option("-o,--output", f->output, "JSON model to write")->required();
  return {sub, [f] { return RunImport(*f); }};
}

}  // namespace qsig::commands
