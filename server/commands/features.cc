// `qsig features`: simulator (or capture) feature vectors with forward-return labels, the
// training data, computed by the same code the server runs (feeds::GenerateLabelledFeatures),
// written in the feature file format (models/io) by server::WriteFeatureFile.
#include <cstdio>
#include <memory>
#include <string>

#include "command.h"
#include "config_flags.h"
#include "qsig/feeds/replay.h"
#include "qsig/server/feature_file.h"
#include "qsig/server/feed_options.h"

namespace qsig::commands {
namespace {

struct FeaturesFlags {
  ConfigFlags config;
  server::FeatureFileOptions file;
  std::string replay_pcap, replay_itch;
};

int RunFeatures(FeaturesFlags& f) {
  auto cfg = LoadConfigOrReport(f.config);
  if (!cfg) return kExitConfig;
  server::FeatureFileOptions& fo = f.file;
  fo.source.sim = server::SimulatorOptionsFromConfig(cfg->config.sim);
  fo.source.feed = server::FeedProcessorOptionsFromConfig(cfg->config.feed, cfg->features);
  if (!f.replay_pcap.empty() || !f.replay_itch.empty()) {
    feeds::ReplayOptions r;
    r.format = f.replay_pcap.empty() ? feeds::ReplayFormat::kItch : feeds::ReplayFormat::kPcap;
    r.path = f.replay_pcap.empty() ? f.replay_itch : f.replay_pcap;
    fo.source.replay = r;
  }
  if (auto st = server::WriteFeatureFile(fo); !st.ok()) return Fail("qsig", "features", st);
  std::printf("qsig features: wrote %s%s%s\n", fo.output_csv.c_str(),
              fo.output_csv.empty() || fo.output_binary.empty() ? "" : " and ",
              fo.output_binary.c_str());
  return 0;
}

}  // namespace

Command AddFeaturesCommand(CLI::App& app) {
  auto f = std::make_shared<FeaturesFlags>();
  CLI::App* sub = app.add_subcommand(
      "features", "Write simulator feature vectors with forward-return labels (training data)");
  AddConfigFlags(sub, &f->config);
  sub->add_option("-o,--output", f->file.output_csv, "CSV file to write");
  sub->add_option("--messages", f->file.source.messages, "ITCH messages to simulate")
      ->capture_default_str();
  sub->add_option("--horizon", f->file.source.horizon, "Label horizon in book updates")
      ->capture_default_str();
  sub->add_option("--binary", f->file.output_binary, "Also write the compact binary format here");
  sub->add_option("--replay-pcap", f->replay_pcap,
                  "Read this pcap capture instead of running the simulator");
  sub->add_option("--replay-itch", f->replay_itch,
                  "Read this length-prefixed ITCH file instead of running the simulator");
  return {sub, [f] { return RunFeatures(*f); }};
}

}  // namespace qsig::commands
