// qsig: the one binary (DESIGN.md "Commands"). Each subcommand lives in its own file in this
// folder; `qsig train` and `qsig qat` are the qsig-torch helper's (LibTorch stays out of this
// process: with it loaded, prometheus-cpp's exposer fails to start).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "command.h"
#include "qsig/models/io/torch_tool.h"

namespace {

// `qsig train` / `qsig qat`: exec qsig-torch with the same arguments.
int HandOverToTorchTool(int argc, char** argv) {
  const std::string tool = qsig::models::io::FindTorchTool();
  if (tool.empty()) {
    std::fprintf(stderr,
                 "qsig %s: needs the qsig-torch helper (built with LibTorch, installed beside "
                 "qsig); none was found beside this executable, on PATH or in $QSIG_TORCH_TOOL\n",
                 argv[1]);
    return 1;
  }
  std::vector<char*> args(argv, argv + argc);
  // argv[0] stays `qsig`, so usage lines read `qsig train ...`.
  args.push_back(nullptr);
  ::execv(tool.c_str(), args.data());
  std::fprintf(stderr, "qsig %s: cannot run %s: %s\n", argv[1], tool.c_str(), std::strerror(errno));
  return 1;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc >= 2 && (std::strcmp(argv[1], "train") == 0 || std::strcmp(argv[1], "qat") == 0)) {
    return HandOverToTorchTool(argc, argv);
  }
  namespace cmd = qsig::commands;
  CLI::App app{"qsig: low-latency trading signal server (ITCH 5.0 -> INT8 LSTM/MLP -> gRPC)"};
  app.require_subcommand(1);
  const std::vector<cmd::Command> commands = {
      cmd::AddServeCommand(app),
      cmd::AddSimCommand(app),
      cmd::AddWatchCommand(app),
      cmd::AddFeaturesCommand(app),
      cmd::AddPredictCommand(app),
      cmd::AddQuantizeCommand(app),
      cmd::AddBacktestCommand(app, "backtest"),
      cmd::AddBacktestCommand(app, "replay"),  // Deprecated alias.
      cmd::AddExportCommand(app),
      cmd::AddInspectCommand(app),
      cmd::AddHealthCommand(app),
      cmd::AddBenchCommand(app),
  };
  // Listed for --help only: main() hands these over to qsig-torch before parsing.
  app.add_subcommand("train", "Train an MLP / LSTM / GRU with LibTorch (qsig train --help)");
  app.add_subcommand("qat", "Quantization-aware fine-tuning, PTQ vs QAT report (qsig qat --help)");

  CLI11_PARSE(app, argc, argv);
  return cmd::RunGiven(commands, 1);
} catch (const std::exception& e) {
  std::fprintf(stderr, "qsig: fatal: %s\n", e.what());
  return 1;
}
