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
#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>
#include <vector>

#include "command.h"

int main(int argc, char** argv) try {
  namespace cmd = qsig::commands;
  CLI::App app{"qsig-torch: LibTorch training, QAT and TorchScript import for qsig"};
  app.require_subcommand(1);
  const std::vector<cmd::Command> commands = {
      cmd::AddTrainCommand(app),
      cmd::AddQatCommand(app),
      cmd::AddTorchImportCommand(app),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return cmd::RunGiven(commands, 2);
} catch (const std::exception& e) {
  std::cerr << "qsig-torch: " << e.what() << std::endl;
  return 1;
}
