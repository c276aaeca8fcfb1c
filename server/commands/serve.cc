// `qsig serve`: runs the signal server until SIGINT / SIGTERM and prints its status every
// console.status_interval_s seconds.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "command.h"
#include "config_flags.h"
#include "qsig/server/server.h"
#include "run_file.h"
#include "spdlog/spdlog.h"

namespace qsig::commands {
namespace {

int RunServe(const config::Config& config) {
  // Handlers first: a SIGTERM that arrives while the server starts still shuts it down cleanly.
  InstallStopHandlers();
  auto server = server::Server::Create(config);
  if (!server.ok()) {
    spdlog::error("{}", std::string(server.status().message()));
    return 1;
  }
  if (auto st = (*server)->Start(); !st.ok()) {
    spdlog::error("{}", std::string(st.message()));
    return 1;
  }
  server::Server& srv = **server;
  std::string feed;
  if (config.feed.source == "pcap" || config.feed.source == "itch") {
    feed = absl::StrCat("replay ", config.feed.source, " ", config.feed.replay.path);
  } else {
    feed =
        absl::StrCat("udp ", config::ParseHostPort(config.feed.listen)->first, ":", srv.feed_port(),
                     config.feed.source == "sim" ? " (built-in simulator)" : " (external)");
  }
  if (config.pipeline.mode == "run_to_completion") {
    absl::StrAppend(&feed, ", run to completion on ", config.pipeline.shards, " shard",
                    config.pipeline.shards == 1 ? "" : "s");
  }
  std::printf(
      "qsig serving\n  gRPC     %s  (qsig.v1.SignalService, health, reflection%s)\n"
      "  admin    %s  (qsig.v1.AdminService%s)\n  metrics  http://%s/metrics\n  feed     %s\n",
      srv.grpc_address().c_str(), config.grpc.tls.cert_file.empty() ? "" : ", TLS",
      srv.admin_address().c_str(),
      config.admin.token_file.empty() && config.admin.allowed_identities.empty()
          ? ", no credentials: loopback only"
          : ", credentials required",
      srv.metrics_address().c_str(), feed.c_str());
  std::fflush(stdout);
  // Where `qsig health` finds the addresses actually bound (ports may have been 0).
  const long pid = static_cast<long>(::getpid());
  RunFile run;
  run.pid = pid;
  run.grpc = srv.grpc_address();
  run.metrics = srv.metrics_address();
  run.tls_cert = config.grpc.tls.cert_file;
  run.tls_key = config.grpc.tls.key_file;
  run.tls_client_ca = config.grpc.tls.client_ca_file;
  run.client_token_file = config.grpc.client_token_file;
  if (std::string error; !WriteRunFile(run, &error)) {
    spdlog::warn("qsig health will not find this server: {}", error);
  }
  const double interval = config.console.status_interval_s;
  auto next = std::chrono::steady_clock::now() + std::chrono::duration<double>(interval);
  srv.Status();  // Start the first interval now.
  while (!StopRequested()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (interval > 0 && std::chrono::steady_clock::now() >= next) {
      next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(interval));
      const server::StatusSnapshot st = srv.Status();
      std::printf(
          "[status] %.0f msg/s  %.0f signals/s  tick-to-signal p50 %.1f us  p99 %.1f us  "
          "shadow rel-RMSE %.4f  malformed %lu  gaps %lu  drops %lu  subscribers %lu  "
          "[%s]\n",
          st.messages_per_s, st.signals_per_s, st.p50_us, st.p99_us, st.shadow_relative_rmse,
          static_cast<unsigned long>(st.malformed), static_cast<unsigned long>(st.gaps),
          static_cast<unsigned long>(st.drops), static_cast<unsigned long>(st.subscribers),
          st.models.c_str());
      std::fflush(stdout);
    }
  }
  std::printf("qsig: shutting down\n");
  RemoveRunFile(pid);
  srv.Stop();
  return 0;
}

}  // namespace

Command AddServeCommand(CLI::App& app) {
  auto flags = std::make_shared<ConfigFlags>();
  CLI::App* sub = app.add_subcommand("serve", "Run the signal server");
  AddConfigFlags(sub, flags.get());
  return {sub, [flags] {
            auto cfg = LoadConfigOrReport(*flags);
            return cfg ? RunServe(cfg->config) : kExitConfig;
          }};
}

}  // namespace qsig::commands
