// qsig-torch: the LibTorch half of the qsig command, in a process of its own (LibTorch cannot
// share the server's process with the metrics exporter; see models/io/CMakeLists.txt).
//
//   qsig-torch train ...   (also `qsig train ...`)   train an MLP / LSTM / GRU
//   qsig-torch qat ...     (also `qsig qat ...`)     quantization-aware fine-tuning
//   qsig-torch import --model FILE.pt [--window N] -o MODEL.json
//                          TorchScript -> qsig's JSON format; what qsig binaries without
//                          LibTorch (the server, `qsig predict`, ...) run to load a .pt file.
//
// Exit status: 0 success, 1 failure (the message names the file / option), 2 bad usage;
// `import` failures exit with 10 + the absl::StatusCode (torchscript_import_process.cc).
#include <cstdlib>
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "qsig/models/io/import.h"
#include "qsig/models/io/model_json.h"
#include "qsig/models/train/train.h"

namespace {

using qsig::models::train::DataOptions;

constexpr int kImportCodeBase = 10;

void AddDataOptions(CLI::App* sub, DataOptions& d) {
  sub->add_option("--input", d.input_csv, "Feature CSV with labels (`qsig features`)")->required();
  sub->add_option("--val-fraction", d.val_fraction, "Last fraction of rows held out")
      ->capture_default_str();
  sub->add_option("--max-train", d.max_train, "Training samples (random subset)")
      ->capture_default_str();
  sub->add_option("--max-val", d.max_val, "Validation samples (even subset)")
      ->capture_default_str();
  sub->add_option("--label-clip", d.label_clip_quantile, "Clip labels to [q, 1-q] quantiles")
      ->capture_default_str();
  sub->add_option("--batch", d.batch, "Minibatch size")->capture_default_str();
  sub->add_option("--seed", d.seed, "Random seed")->capture_default_str();
  sub->add_option("--threads", d.threads, "LibTorch threads")->capture_default_str();
}

int Fail(const std::string& what, const std::string& message) {
  std::cerr << "qsig-torch " << what << ": " << message << std::endl;
  return 1;
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"qsig-torch: LibTorch training, QAT and TorchScript import for qsig"};
  app.require_subcommand(1);

  qsig::models::train::TrainOptions to;
  auto* train = app.add_subcommand("train", "Train a signal model on a feature CSV");
  AddDataOptions(train, to.data);
  train->add_option("--arch", to.arch, "mlp, lstm or gru")->capture_default_str();
  train->add_option("-o,--output", to.output_path, "Model to write (JSON)")->required();
  train->add_option("--report", to.report_json, "Report JSON");
  train->add_option("--name", to.name, "Model name");
  train->add_option("--hidden", to.hidden, "Hidden units (default 32 MLP, 16 recurrent)");
  train->add_option("--layers", to.layers, "Hidden / recurrent layers (default 2 MLP, 1)");
  train->add_option("--window", to.window, "Timesteps of a recurrent model")->capture_default_str();
  train->add_option("--epochs", to.epochs)->capture_default_str();
  train->add_option("--lr", to.lr, "Adam learning rate")->capture_default_str();

  qsig::models::train::QatOptions qo;
  auto* qat = app.add_subcommand("qat", "Quantization-aware fine-tuning; reports PTQ vs QAT");
  AddDataOptions(qat, qo.data);
  qat->add_option("--model", qo.model_path, "Trained model (.json, .onnx, .pt, .qsig)")->required();
  qat->add_option("-o,--output", qo.output_path, "Fine-tuned model to write (JSON)")->required();
  qat->add_option("--report", qo.report_json, "Report JSON");
  qat->add_option("--epochs", qo.epochs)->capture_default_str();
  qat->add_option("--freeze-observers-after", qo.freeze_observers_after,
                  "Activation observers stop updating after this many epochs")
      ->capture_default_str();
  qat->add_option("--lr", qo.lr, "Adam learning rate")->capture_default_str();
  qat->add_option("--method", qo.method, "Activation ranges of the PTQ runs")
      ->capture_default_str();
  qat->add_option("--percentile", qo.percentile)->capture_default_str();

  std::string import_model, import_out;
  qsig::models::io::ImportOptions io;
  auto* import = app.add_subcommand("import", "TorchScript to qsig's JSON model format");
  import->add_option("--model", import_model, "TorchScript file (torch.jit.save)")->required();
  import->add_option("--window", io.window, "Timesteps of a recurrent model");
  import->add_option("-o,--output", import_out, "JSON model to write")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  if (*train) {
    auto r = qsig::models::train::RunTrain(to);
    return r.ok() ? 0 : Fail("train", std::string(r.status().message()));
  }
  if (*qat) {
    auto r = qsig::models::train::RunQat(qo);
    return r.ok() ? 0 : Fail("qat", std::string(r.status().message()));
  }
  auto spec = qsig::models::io::ImportTorchScript(import_model, io);
  if (!spec.ok()) {
    // The status code travels in the exit status (kImportCodeBase + code), so the caller's
    // ImportTorchScript returns the same code as the in-process importer would.
    Fail("import", std::string(spec.status().message()));
    return kImportCodeBase + static_cast<int>(spec.status().code());
  }
  auto written = qsig::models::io::WriteModelJson(*spec, import_out);
  if (!written.ok()) return Fail("import", std::string(written.status().message()));
  return 0;
} catch (const std::exception& e) {
  std::cerr << "qsig-torch: " << e.what() << std::endl;
  return 1;
}
