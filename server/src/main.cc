// The qsig command: serve, sim, watch, features.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "qsig/config/config.h"
#include "qsig/feeds/feed.h"
#include "qsig/models/io/commands.h"
#include "qsig/models/io/torch_tool.h"
#include "qsig/server/server.h"
#include "sim_options.h"
#include "spdlog/spdlog.h"
#include "watch.h"

namespace {

constexpr int kExitConfig = 2;

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

void InstallSignalHandlers() {
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// Loads the config or prints why not; nullopt means exit with kExitConfig.
std::optional<qsig::config::Config> Load(const std::string& path,
                                         const std::vector<std::string>& overrides) {
  auto cfg = qsig::config::LoadConfig(path, overrides);
  if (!cfg.ok()) {
    std::fprintf(stderr, "qsig: config error: %s\n", std::string(cfg.status().message()).c_str());
    return std::nullopt;
  }
  return *cfg;
}

int RunSim(const qsig::config::Config& cfg) {
  qsig::feeds::SimPublisherOptions o;
  o.sim.instruments = cfg.sim.instruments;
  o.sim.seed = cfg.sim.seed;
  o.sim.max_messages_per_packet = cfg.sim.messages_per_packet;
  o.destination = cfg.sim.destination;
  o.interface_address = cfg.feed.interface_address;
  o.messages_per_second = cfg.sim.rate;
  o.max_messages = cfg.sim.max_messages;
  o.destination_b = cfg.sim.destination_b;
  if (cfg.sim.retransmit) o.retransmit_listen = cfg.sim.retransmit_listen;
  qsig::server::ApplySimFaults(cfg.sim, &o);
  auto pub = qsig::feeds::SimPublisher::Start(o);
  if (!pub.ok()) {
    std::fprintf(stderr, "qsig sim: %s\n", std::string(pub.status().message()).c_str());
    return 1;
  }
  std::printf("qsig sim: %zu instruments, %.0f msg/s to udp %s%s%s (seed %lu)\n",
              cfg.sim.instruments.size(), cfg.sim.rate, cfg.sim.destination.c_str(),
              cfg.sim.destination_b.empty() ? "" : ", B line ", cfg.sim.destination_b.c_str(),
              static_cast<unsigned long>(cfg.sim.seed));
  if ((*pub)->retransmit_port()) {
    std::printf("qsig sim: retransmission server on udp port %u\n", (*pub)->retransmit_port());
  }
  std::fflush(stdout);
  InstallSignalHandlers();
  auto last = std::chrono::steady_clock::now();
  uint64_t last_sent = 0;
  while (!g_stop.load() && !(*pub)->finished()) {
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

// `qsig train` and `qsig qat` are the qsig-torch helper's (LibTorch stays out of this process):
// exec it with the same arguments.
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

int main(int argc, char** argv) try {
  if (argc >= 2 && (std::strcmp(argv[1], "train") == 0 || std::strcmp(argv[1], "qat") == 0)) {
    return HandOverToTorchTool(argc, argv);
  }
  CLI::App app{"qsig: low-latency trading signal server (ITCH 5.0 -> INT8 LSTM/MLP -> gRPC)"};
  app.require_subcommand(1);
  std::string config_path;
  std::vector<std::string> overrides;
  auto add_config = [&](CLI::App* sub, bool required) {
    auto* opt = sub->add_option("-c,--config", config_path, "YAML config file");
    if (required) opt->required();
    sub->add_option("--set", overrides, "Override a config key: key.path=value (repeatable)");
  };

  auto* serve = app.add_subcommand("serve", "Run the signal server");
  add_config(serve, false);

  auto* sim = app.add_subcommand("sim", "Run the exchange simulator (ITCH 5.0 over MoldUDP64)");
  add_config(sim, false);

  auto* watch = app.add_subcommand("watch", "Subscribe over gRPC and print signals");
  qsig::server::WatchOptions wo;
  watch->add_option("--target", wo.target, "gRPC address")->capture_default_str();
  watch->add_option("--instrument", wo.instruments, "Instrument filter (repeatable)");
  watch->add_option("--model", wo.models, "Model filter (repeatable)");
  watch->add_option("--count", wo.count, "Exit after this many signals (0 = run forever)");
  watch->add_option("--timeout", wo.timeout_s, "Give up if the server is not reachable (s)")
      ->capture_default_str();

  auto* features = app.add_subcommand(
      "features", "Write simulator feature vectors with forward-return labels (training data)");
  add_config(features, false);
  qsig::feeds::FeatureFileOptions fo;
  features->add_option("-o,--output", fo.output_csv, "CSV file to write");
  features->add_option("--messages", fo.messages, "ITCH messages to simulate")
      ->capture_default_str();
  features->add_option("--horizon", fo.horizon, "Label horizon in book updates")
      ->capture_default_str();
  features->add_option("--binary", fo.output_binary, "Also write the compact binary format here");
  std::string replay_pcap, replay_itch;
  features->add_option("--replay-pcap", replay_pcap,
                       "Read this pcap capture instead of running the simulator");
  features->add_option("--replay-itch", replay_itch,
                       "Read this length-prefixed ITCH file instead of running the simulator");

  auto* predict = app.add_subcommand(
      "predict", "Run any loadable model (.json, .onnx, .pt, .qsig) over a feature CSV");
  qsig::models::io::PredictCommandOptions po;
  predict->add_option("--model", po.model_path, "Model file")->required();
  predict->add_option("--input", po.input_csv, "Feature CSV from `qsig features`")->required();
  predict->add_option("-o,--output", po.output_csv, "Output CSV (one line per row)")->required();
  predict->add_option("--precision", po.precision, "int8 or fp32")
      ->check(CLI::IsMember({"int8", "fp32"}))
      ->capture_default_str();
  predict
      ->add_option("--calib-rows", po.calib_rows,
                   "INT8: calibrate on the first N rows (unless the model is a .qsig)")
      ->capture_default_str();
  predict->add_option("--window", po.import.window, "Timesteps of an imported recurrent model");

  auto* quantize = app.add_subcommand(
      "quantize", "Post-training static quantization with a report; writes a .qsig artifact");
  qsig::models::io::QuantizeCommandOptions qo;
  quantize->add_option("--model", qo.model_path, "Model file (.json, .onnx, .pt)")->required();
  quantize->add_option("--calib", qo.calib_csv, "Feature CSV with labels (`qsig features`)")
      ->required();
  quantize->add_option("-o,--output", qo.output_path, "Artifact to write (.qsig)")->required();
  quantize->add_option("--method", qo.method, "Activation-range method")
      ->check(CLI::IsMember({"minmax", "ema", "percentile", "entropy", "mse"}))
      ->capture_default_str();
  quantize->add_option("--percentile", qo.percentile)->capture_default_str();
  quantize->add_flag("--per-channel", qo.per_channel,
                     "Per-feature input scales folded into the first layer");
  quantize->add_option("--report", qo.report_json, "Report JSON (default: OUT.report.json)");
  quantize->add_flag("--reduce-range", qo.reduce_range,
                     "7-bit weights, for serving on CPUs without VNNI (AVX2)");
  quantize->add_flag("--no-source-ranges{false}", qo.source_ranges,
                     "Recalibrate the layer-input ranges the model file carries (QDQ / qat)");
  quantize->add_option("--mixed", qo.mixed, "auto: choose a mixed-precision plan under --budget")
      ->check(CLI::IsMember({"auto", "off"}))
      ->capture_default_str();
  quantize->add_option("--budget", qo.budget, "--mixed auto: max INT8 RMSE / FP32 RMS")
      ->capture_default_str();
  quantize->add_option("--window", qo.import.window, "Timesteps of an imported recurrent model");

  auto* replay = app.add_subcommand(
      "replay", "Run a model in FP32 and INT8 side by side over a feature file (desk metrics)");
  qsig::models::io::ReplayCommandOptions ro;
  replay->add_option("--model", ro.model_path, "Model file (.json, .onnx, .pt, .qsig)")->required();
  replay->add_option("--input", ro.input_csv, "Feature CSV with labels (`qsig features`)")
      ->required();
  replay->add_option("-o,--output", ro.report_json, "Report JSON");
  replay
      ->add_option("--calib-rows", ro.calib_rows,
                   "INT8: calibrate on the first N rows (not scored) unless the model is .qsig")
      ->capture_default_str();
  replay->add_option("--horizon-label", ro.horizon_label,
                     "Label horizon H: adds a Sharpe over non-overlapping rows");
  replay->add_option("--window", ro.import.window, "Timesteps of an imported recurrent model");

  auto* export_cmd = app.add_subcommand("export", "Export a .qsig artifact as a QDQ ONNX model");
  qsig::models::io::ExportOptions eo;
  export_cmd->add_option("--onnx-qdq", eo.artifact_path, "Artifact to export (.qsig, MLP)")
      ->required();
  export_cmd->add_option("-o,--output", eo.output_path, "ONNX file to write")->required();

  qsig::models::io::InspectOptions io_inspect;
  auto* inspect = app.add_subcommand(
      "inspect", "What a model file is; for a .qsig artifact its provenance and verification");
  inspect->add_option("model", io_inspect.model_path, "Model file")->required();
  inspect->add_flag("--json", io_inspect.json, "Print JSON");
  inspect->add_option("--window", io_inspect.import.window,
                      "Timesteps of an imported recurrent model");

  // Listed for --help only: main() hands these over to qsig-torch before parsing.
  app.add_subcommand("train", "Train an MLP / LSTM / GRU with LibTorch (qsig train --help)");
  app.add_subcommand("qat", "Quantization-aware fine-tuning, PTQ vs QAT report (qsig qat --help)");

  CLI11_PARSE(app, argc, argv);

  if (replay->parsed()) {
    auto r = qsig::models::io::RunReplay(ro);
    if (!r.ok()) {
      std::fprintf(stderr, "qsig replay: %s\n", std::string(r.status().message()).c_str());
      return 1;
    }
    return 0;
  }
  if (export_cmd->parsed()) {
    auto r = qsig::models::io::RunExportOnnxQdq(eo);
    if (!r.ok()) {
      std::fprintf(stderr, "qsig export: %s\n", std::string(r.status().message()).c_str());
      return 1;
    }
    return 0;
  }

  if (inspect->parsed()) {
    auto r = qsig::models::io::RunInspect(io_inspect);
    if (!r.ok()) {
      std::fprintf(stderr, "qsig inspect: %s\n", std::string(r.status().message()).c_str());
      return 1;
    }
    return r->artifact && !r->verified ? 1 : 0;
  }
  if (predict->parsed()) {
    auto r = qsig::models::io::RunPredict(po);
    if (!r.ok()) {
      std::fprintf(stderr, "qsig predict: %s\n", std::string(r.status().message()).c_str());
      return 1;
    }
    return 0;
  }
  if (quantize->parsed()) {
    auto r = qsig::models::io::RunQuantize(qo);
    if (!r.ok()) {
      std::fprintf(stderr, "qsig quantize: %s\n", std::string(r.status().message()).c_str());
      return 1;
    }
    return 0;
  }

  if (watch->parsed()) return qsig::server::RunWatch(wo);

  auto cfg = Load(config_path, overrides);
  if (!cfg) return kExitConfig;
  auto feature_specs = qsig::server::ParseFeatureConfig(*cfg);
  if (!feature_specs.ok()) {
    std::fprintf(stderr, "qsig: config error: %s\n",
                 std::string(feature_specs.status().message()).c_str());
    return kExitConfig;
  }
  if (serve->parsed()) return qsig::server::RunServe(*cfg);
  if (sim->parsed()) return RunSim(*cfg);
  if (features->parsed()) {
    fo.sim.instruments = cfg->sim.instruments;
    fo.sim.seed = cfg->sim.seed;
    fo.sim.max_messages_per_packet = cfg->sim.messages_per_packet;
    fo.feed.max_instruments = cfg->feed.max_instruments;
    fo.feed.max_orders = cfg->feed.max_orders;
    fo.feed.features = *feature_specs;
    if (!replay_pcap.empty() || !replay_itch.empty()) {
      qsig::feeds::ReplayOptions r;
      r.format =
          replay_pcap.empty() ? qsig::feeds::ReplayFormat::kItch : qsig::feeds::ReplayFormat::kPcap;
      r.path = replay_pcap.empty() ? replay_itch : replay_pcap;
      fo.replay = r;
    }
    auto st = qsig::feeds::WriteFeatureFile(fo);
    if (!st.ok()) {
      std::fprintf(stderr, "qsig features: %s\n", std::string(st.message()).c_str());
      return 1;
    }
    std::printf("qsig features: wrote %s%s%s\n", fo.output_csv.c_str(),
                fo.output_csv.empty() || fo.output_binary.empty() ? "" : " and ",
                fo.output_binary.c_str());
    return 0;
  }
  return 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "qsig: fatal: %s\n", e.what());
  return 1;
}
