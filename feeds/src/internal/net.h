// Address parsing for the UDP transports (Boost.Asio stays private to feeds/src).
#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/udp.hpp>
#include <string_view>

#include "absl/status/statusor.h"

namespace qsig::feeds::internal {

// Parses "host:port" (IPv4, "[IPv6]:port", or a resolvable host name) into a UDP endpoint.
// `what` names the setting in error messages, e.g. "UdpReceiverOptions.listen".
absl::StatusOr<boost::asio::ip::udp::endpoint> ParseUdpEndpoint(std::string_view host_port,
                                                                std::string_view what);

// Parses a literal IP address; `what` names the setting in error messages.
absl::StatusOr<boost::asio::ip::address> ParseIpAddress(std::string_view text,
                                                        std::string_view what);

}  // namespace qsig::feeds::internal
