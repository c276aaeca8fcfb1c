// The one mapping from config keys (qsig/config/config.h) to feed options (qsig/feeds/feed.h),
// shared by `qsig serve`, `qsig sim` and `qsig features` so the three read the keys the same way
// (config knows nothing of feeds; server joins them). Thread-safety: reentrant.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "qsig/config/config.h"
#include "qsig/feeds/features.h"
#include "qsig/feeds/feed_processor.h"
#include "qsig/feeds/sim_publisher.h"
#include "qsig/feeds/simulator.h"

namespace qsig::server {

// The feature set named by feed.features (the default set when empty); errors name the key.
absl::StatusOr<std::vector<feeds::FeatureSpec>> ParseFeatureConfig(const config::Config& config);

// A UDP port on 127.0.0.1 that was free a moment ago.
absl::StatusOr<uint16_t> FreeUdpPort();

// sim.instruments, sim.seed, sim.messages_per_packet.
feeds::SimulatorOptions SimulatorOptionsFromConfig(const config::SimConfig& sim);

// The publisher `qsig sim` runs: the simulator above at sim.rate for sim.max_messages, sent to
// sim.destination (and sim.destination_b) through feed.interface_address, with the faults,
// session restarts, recordings and (sim.retransmit) a retransmission server on
// sim.retransmit_listen. `qsig serve` overrides the destinations and the retransmission address
// to point at its own feed sockets.
feeds::SimPublisherOptions SimPublisherOptionsFromConfig(const config::Config& config);

// feed.max_instruments, feed.max_orders, feed.recovery.*, feed.corroboration.*,
// feed.max_sequence_jump, feed.max_price and the feature set `features`
// (ParseFeatureConfig).
feeds::FeedProcessorOptions FeedProcessorOptionsFromConfig(
    const config::FeedConfig& feed, std::vector<feeds::FeatureSpec> features);

}  // namespace qsig::server
