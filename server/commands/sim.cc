// `qsig sim`: the exchange simulator (ITCH 5.0 over MoldUDP64) until SIGINT / SIGTERM or
// sim.max_messages, with a rate line every 5 s.
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "command.h"
#include "config_flags.h"
#include "qsig/feeds/sim_publisher.h"
#include "qsig/server/feed_options.h"

namespace qsig::commands {
namespace {

int RunSim(const config::Config& cfg) {
  auto pub = feeds::SimPublisher::Start(server::SimPublisherOptionsFromConfig(cfg));
  if (!pub.ok()) return Fail("qsig", "sim", pub.status());
  std::printf("qsig sim: %zu instruments, %.0f msg/s to udp %s%s%s (seed %lu)\n",
              cfg.sim.instruments.size(), cfg.sim.rate, cfg.sim.destination.c_str(),
              cfg.sim.destination_b.empty() ? "" : ", B line ", cfg.sim.destination_b.c_str(),
              static_cast<unsigned long>(cfg.sim.seed));
  if ((*pub)->retransmit_port()) {
    std::printf("qsig sim: retransmission server on udp port %u\n", (*pub)->retransmit_port());
  }
  std::fflush(stdout);
  InstallStopHandlers();
  auto last = std::chrono::steady_clock::now();
  uint64_t last_sent = 0;
  while (!StopRequested() && !(*pub)->finished()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const auto now = std::chrono::steady_clock::now();
    if (now - last >= std::chrono::seconds(5)) {
      const uint64_t sent = (*pub)->messages_sent();
      std::printf(
          "[sim] %.0f msg/s, %lu messages, %lu packets\n",
          static_cast<double>(sent - last_sent) / std::chrono::duration<double>(now - last).count(),
          static_cast<unsigned long>(sent), static_cast<unsigned long>((*pub)->packets_sent()));
      std::fflush(stdout);
      last = now;
      last_sent = sent;
    }
  }
  (*pub)->Stop();
  std::printf("qsig sim: sent %lu messages in %lu packets\n",
              static_cast<unsigned long>((*pub)->messages_sent()),
              static_cast<unsigned long>((*pub)->packets_sent()));
  return 0;
}

}  // namespace

Command AddSimCommand(CLI::App& app) {
  auto flags = std::make_shared<ConfigFlags>();
  CLI::App* sub = app.add_subcommand("sim", "Run the exchange simulator (ITCH 5.0 over MoldUDP64)");
  AddConfigFlags(sub, flags.get());
  return {sub, [flags] {
            auto cfg = LoadConfigOrReport(*flags);
            return cfg ? RunSim(cfg->config) : kExitConfig;
          }};
}

}  // namespace qsig::commands
