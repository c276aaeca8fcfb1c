// The config flags (config_flags.h).
#include "config_flags.h"

#include <cstdio>
#include <utility>

#include "qsig/server/feed_options.h"

namespace qsig::commands {

void AddConfigFlags(CLI::App* sub, ConfigFlags* flags) {
  sub->add_option("-c,--config", flags->path, "YAML config file");
  sub->add_option("--set", flags->overrides, "Override a config key: key.path=value (repeatable)");
}

std::optional<LoadedConfig> LoadConfigOrReport(const ConfigFlags& flags) {
  auto cfg = config::LoadConfig(flags.path, flags.overrides);
  if (!cfg.ok()) {
    std::fprintf(stderr, "qsig: config error: %s\n", std::string(cfg.status().message()).c_str());
    return std::nullopt;
  }
  auto features = server::ParseFeatureConfig(*cfg);
  if (!features.ok()) {
    std::fprintf(stderr, "qsig: config error: %s\n",
                 std::string(features.status().message()).c_str());
    return std::nullopt;
  }
  return LoadedConfig{std::move(*cfg), std::move(*features)};
}

}  // namespace qsig::commands
