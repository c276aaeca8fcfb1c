// What the `qsig` and `qsig-torch` subcommands share (one file per subcommand in this folder).
// A subcommand file adds its flags to the CLI11 app and returns how to run it; main() parses and
// runs the one given. Only code in this folder parses flags or prints for a person.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace qsig::commands {

// A subcommand: its CLI11 app (parsed() tells whether it was given) and its body, which
// returns the process exit status.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

// Runs the command that was given on the command line; `none` if none was.
int RunGiven(const std::vector<Command>& commands, int none);

// Prints "<program> <command>: <message>" to stderr and returns 1.
int Fail(std::string_view program, std::string_view command, const absl::Status& status);

// The process's one SIGINT / SIGTERM handler: after InstallStopHandlers(), StopRequested()
// turns true on the first signal.
void InstallStopHandlers();
bool StopRequested();

// The subcommands of `qsig`, one file each.
Command AddServeCommand(CLI::App& app);     // serve.cc
Command AddSimCommand(CLI::App& app);       // sim.cc
Command AddFeaturesCommand(CLI::App& app);  // features.cc
Command AddWatchCommand(CLI::App& app);     // watch.cc
Command AddPredictCommand(CLI::App& app);   // predict.cc
Command AddQuantizeCommand(CLI::App& app);  // quantize.cc
// backtest.cc: `qsig backtest`, and `qsig replay`, its deprecated alias.
Command AddBacktestCommand(CLI::App& app, std::string_view name);
Command AddInspectCommand(CLI::App& app);  // inspect.cc
Command AddExportCommand(CLI::App& app);   // export.cc
Command AddHealthCommand(CLI::App& app);   // health.cc
Command AddBenchCommand(CLI::App& app);    // bench.cc

// The subcommands of `qsig-torch` (LibTorch), one file each.
Command AddTrainCommand(CLI::App& app);        // train.cc
Command AddQatCommand(CLI::App& app);          // qat.cc
Command AddTorchImportCommand(CLI::App& app);  // torch_import.cc

}  // namespace qsig::commands
