// Feed and simulator settings shared by `qsig serve`, `qsig sim` and `qsig features`.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "qsig/config/config.h"
#include "qsig/feeds/features.h"
#include "qsig/feeds/feed.h"

namespace qsig::server {

// The feature set named by feed.features (the default set when empty); errors name the key.
absl::StatusOr<std::vector<feeds::FeatureSpec>> ParseFeatureConfig(const config::Config& config);

// A UDP port on 127.0.0.1 that was free a moment ago.
absl::StatusOr<uint16_t> FreeUdpPort();

// Copies the simulator's fault-injection and recording settings into publisher options.
void ApplySimFaults(const config::SimConfig& sim, feeds::SimPublisherOptions* o);

}  // namespace qsig::server
