#include "internal/net.h"

#include <boost/asio/io_context.hpp>
#include <charconv>
#include <string>

#include "absl/status/status.h"
#include "internal/str.h"

namespace qsig::feeds::internal {

namespace asio = boost::asio;

absl::StatusOr<asio::ip::address> ParseIpAddress(std::string_view text, std::string_view what) {
  boost::system::error_code ec;
  asio::ip::address a = asio::ip::make_address(std::string(text), ec);
  if (ec) {
    return absl::InvalidArgumentError(Cat(what, ": '", text, "' is not an IP address (",
                                          ec.message(), "); use a literal like 239.1.1.1"));
  }
  return a;
}

absl::StatusOr<asio::ip::udp::endpoint> ParseUdpEndpoint(std::string_view host_port,
                                                         std::string_view what) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == host_port.size()) {
    return absl::InvalidArgumentError(
        Cat(what, ": '", host_port, "' is not host:port (e.g. 127.0.0.1:31000)"));
  }
  std::string_view host = host_port.substr(0, colon);
  const std::string_view port_text = host_port.substr(colon + 1);
  unsigned port = 0;
  const auto [end, err] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (err != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
    return absl::InvalidArgumentError(
        Cat(what, ": '", host_port, "' has bad port '", port_text, "' (want 0..65535)"));
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) host = "0.0.0.0";

  boost::system::error_code ec;
  const asio::ip::address literal = asio::ip::make_address(std::string(host), ec);
  if (!ec) return asio::ip::udp::endpoint(literal, static_cast<uint16_t>(port));

  // Not a literal: resolve the name (cold path, may block on DNS).
  asio::io_context io;
  asio::ip::udp::resolver resolver(io);
  const auto results =
      resolver.resolve(asio::ip::udp::v4(), std::string(host), std::to_string(port), ec);
  if (ec || results.empty()) {
    return absl::InvalidArgumentError(Cat(what, ": cannot resolve host '", host, "' in '",
                                          host_port,
                                          "': ", ec ? ec.message() : std::string("no addresses")));
  }
  return results.begin()->endpoint();
}

}  // namespace qsig::feeds::internal
