// Shared helpers of the qsig subcommands (command.h).
#include "command.h"

#include <signal.h>

#include <atomic>
#include <cstdio>

namespace qsig::commands {
namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

}  // namespace

int RunGiven(const std::vector<Command>& commands, int none) {
  for (const Command& c : commands) {
    if (c.app->parsed()) return c.run();
  }
  return none;
}

int Fail(std::string_view program, std::string_view command, const absl::Status& status) {
  std::fprintf(stderr, "%.*s %.*s: %s\n", static_cast<int>(program.size()), program.data(),
               static_cast<int>(command.size()), command.data(),
               std::string(status.message()).c_str());
  return 1;
}

void InstallStopHandlers() {
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool StopRequested() { return g_stop.load(); }

}  // namespace qsig::commands
