// The YAML config flags of `qsig serve`, `qsig sim` and `qsig features`.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "qsig/config/config.h"
#include "qsig/feeds/features.h"

namespace qsig::commands {

// Exit status of a config that does not load or validate.
inline constexpr int kExitConfig = 2;

// -c/--config and --set, for the commands that read the YAML config.
struct ConfigFlags {
  std::string path;
  std::vector<std::string> overrides;
};
void AddConfigFlags(CLI::App* sub, ConfigFlags* flags);

// The config and its feature set, or nullopt after printing why not ("qsig: config error: ...";
// exit with kExitConfig).
struct LoadedConfig {
  config::Config config;
  std::vector<feeds::FeatureSpec> features;
};
std::optional<LoadedConfig> LoadConfigOrReport(const ConfigFlags& flags);

}  // namespace qsig::commands
