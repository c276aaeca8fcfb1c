// Config -> feed options (qsig/server/feed_options.h).
#include "qsig/server/feed_options.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace qsig::server {

absl::StatusOr<std::vector<feeds::FeatureSpec>> ParseFeatureConfig(const config::Config& config) {
  if (config.feed.features.empty()) return feeds::DefaultFeatureSpecs();
  std::vector<feeds::FeatureSpec> specs;
  for (size_t i = 0; i < config.feed.features.size(); ++i) {
    auto one = feeds::ParseFeatureSpecs(config.feed.features[i]);
    if (!one.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(config.path, ": feed.features[", i, "]: ", one.status().message()));
    }
    specs.insert(specs.end(), one->begin(), one->end());
  }
  if (auto names = feeds::FeatureNames(specs); !names.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(config.path, ": feed.features: ", names.status().message()));
  }
  return specs;
}

absl::StatusOr<uint16_t> FreeUdpPort() {
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) close(fd);
    return absl::UnavailableError("cannot pick a free UDP port on 127.0.0.1");
  }
  close(fd);
  return ntohs(a.sin_port);
}

feeds::SimulatorOptions SimulatorOptionsFromConfig(const config::SimConfig& sim) {
  feeds::SimulatorOptions o;
  o.instruments = sim.instruments;
  o.seed = sim.seed;
  o.max_messages_per_packet = sim.messages_per_packet;
  o.volatility = sim.volatility;
  o.spread = sim.spread;
  o.order_size = sim.order_size;
  o.trade_intensity = sim.trade_intensity;
  for (const config::SimConfig::Regime& r : sim.regimes) {
    o.regimes.push_back(feeds::SimRegime{.at_s = r.at_s,
                                         .volatility = r.volatility,
                                         .spread = r.spread,
                                         .order_size = r.order_size,
                                         .trade_intensity = r.trade_intensity});
  }
  return o;
}

feeds::SimPublisherOptions SimPublisherOptionsFromConfig(const config::Config& config) {
  const config::SimConfig& sim = config.sim;
  auto faults = [](const config::FaultsConfig& f) {
    feeds::LineFaults l;
    l.drop = f.drop;
    l.reorder = f.reorder;
    l.duplicate = f.duplicate;
    l.malformed = f.malformed;
    return l;
  };
  feeds::SimPublisherOptions o;
  o.sim = SimulatorOptionsFromConfig(sim);
  o.destination = sim.destination;
  o.interface_address = config.feed.interface_address;
  o.messages_per_second = sim.rate;
  o.max_messages = sim.max_messages;
  o.destination_b = sim.destination_b;
  if (sim.retransmit) o.retransmit_listen = sim.retransmit_listen;
  o.faults_a = faults(sim.faults_a);
  o.faults_b = faults(sim.faults_b);
  o.session_restart_rate = sim.session_restart_rate;
  o.pcap_path = sim.record_pcap;
  o.itch_path = sim.record_itch;
  return o;
}

feeds::FeedProcessorOptions FeedProcessorOptionsFromConfig(
    const config::FeedConfig& feed, std::vector<feeds::FeatureSpec> features) {
  feeds::FeedProcessorOptions o;
  o.max_instruments = feed.max_instruments;
  o.max_orders = feed.max_orders;
  o.recovery.max_held_messages = feed.recovery.max_held_messages;
  o.recovery.rerequest_delay_us = feed.recovery.rerequest_delay_us;
  o.recovery.rerequest_interval_us = feed.recovery.rerequest_interval_us;
  o.recovery.max_rerequests = feed.recovery.max_rerequests;
  o.recovery.gap_timeout_us = feed.recovery.gap_timeout_us;
  o.corroboration.confirm_packets = feed.corroboration.confirm_packets;
  o.corroboration.window_us = feed.corroboration.window_us;
  o.corroboration.max_sequence_jump = feed.max_sequence_jump;
  o.max_price = static_cast<uint32_t>(std::llround(feed.max_price * 1e4));
  o.server_shard_count = feed.shard.count;
  o.server_shard_index = feed.shard.index;
  o.server_symbols = feed.shard.symbols;
  o.features = std::move(features);
  return o;
}

}  // namespace qsig::server
