// Simulator settings shared by `qsig serve` (embedded simulator) and `qsig sim`.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "qsig/config/config.h"
#include "qsig/feeds/feed.h"

namespace qsig::server {

// A UDP port on 127.0.0.1 that was free a moment ago.
absl::StatusOr<uint16_t> FreeUdpPort();

// Copies the simulator's fault-injection and recording settings into publisher options.
void ApplySimFaults(const config::SimConfig& sim, feeds::SimPublisherOptions* o);

}  // namespace qsig::server
