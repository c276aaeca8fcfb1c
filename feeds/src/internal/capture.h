// Capture files: pcap (libpcap) with Ethernet/IPv4/UDP framing, and length-prefixed ITCH files
// (each message preceded by its length as a big-endian u16, the format exchanges distribute).
//
// Writers are cold-path helpers for the simulator; readers feed ReplaySource and allocate
// nothing per record. None is thread-safe: one thread owns each.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qsig::feeds::internal {

struct UdpAddress {
  uint32_t ip = 0;  // IPv4, host order.
  uint16_t port = 0;
};

class PcapWriter {
 public:
  static absl::StatusOr<std::unique_ptr<PcapWriter>> Open(const std::string& path);
  ~PcapWriter();
  // One UDP datagram as an Ethernet frame stamped `wall_ns` (nanoseconds since the epoch).
  void Write(int64_t wall_ns, UdpAddress src, UdpAddress dst,
             std::span<const uint8_t> payload) noexcept;
  absl::Status Close();

 private:
  PcapWriter() = default;
  void* pcap_ = nullptr;    // pcap_t*
  void* dumper_ = nullptr;  // pcap_dumper_t*
  std::string path_;
  std::vector<uint8_t> frame_;
};

// Reads UDP payloads out of a pcap file: Ethernet (with 802.1Q tags), Linux cooked, raw IP or
// BSD loopback link types; IPv4 and IPv6 without extension headers; fragments are skipped.
class PcapReader {
 public:
  struct Counts {
    uint64_t frames = 0;
    uint64_t skipped = 0;    // Not UDP, fragments, filtered out by port.
    uint64_t truncated = 0;  // Captured shorter than on the wire.
  };
  static absl::StatusOr<std::unique_ptr<PcapReader>> Open(const std::string& path,
                                                          const std::string& bpf_filter,
                                                          std::vector<uint16_t> dst_ports);
  ~PcapReader();
  // Copies the next UDP payload into `out`; returns its size, 0 at the end, -1 on error.
  int Next(std::span<uint8_t> out, int64_t* ts_ns, UdpAddress* dst) noexcept;
  const Counts& counts() const noexcept { return counts_; }

 private:
  PcapReader() = default;
  void* pcap_ = nullptr;
  int link_type_ = 0;
  std::vector<uint16_t> ports_;
  Counts counts_;
};

class ItchFileWriter {
 public:
  static absl::StatusOr<std::unique_ptr<ItchFileWriter>> Open(const std::string& path);
  ~ItchFileWriter();
  void Write(std::span<const uint8_t> message) noexcept;
  absl::Status Close();

 private:
  ItchFileWriter() = default;
  std::FILE* f_ = nullptr;
  std::string path_;
  std::vector<char> buffer_;
};

class ItchFileReader {
 public:
  static absl::StatusOr<std::unique_ptr<ItchFileReader>> Open(const std::string& path);
  ~ItchFileReader();
  // Points *message at the next message (valid until the next call); returns its length,
  // 0 at the end, -1 if the file ends inside a record or cannot be read.
  int Next(const uint8_t** message) noexcept;

 private:
  ItchFileReader() = default;
  bool Fill(size_t need) noexcept;
  std::FILE* f_ = nullptr;
  std::vector<uint8_t> buffer_;
  size_t begin_ = 0;
  size_t end_ = 0;
  bool eof_ = false;
};

}  // namespace qsig::feeds::internal
