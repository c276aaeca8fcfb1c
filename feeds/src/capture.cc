// pcap and length-prefixed ITCH files (see internal/capture.h).
#include "internal/capture.h"

#include <pcap/pcap.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "internal/endian.h"
#include "internal/str.h"

namespace qsig::feeds::internal {
namespace {

constexpr size_t kEthernet = 14;
constexpr size_t kIpv4 = 20;
constexpr size_t kUdp = 8;
constexpr int kSnapLen = 65535;

uint16_t Ipv4Checksum(const uint8_t* h) noexcept {
  uint32_t sum = 0;
  for (size_t i = 0; i < kIpv4; i += 2) sum += LoadBe16(h + i);
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

}  // namespace

absl::StatusOr<std::unique_ptr<PcapWriter>> PcapWriter::Open(const std::string& path) {
  std::unique_ptr<PcapWriter> w(new PcapWriter());
  w->path_ = path;
  pcap_t* p =
      pcap_open_dead_with_tstamp_precision(DLT_EN10MB, kSnapLen, PCAP_TSTAMP_PRECISION_NANO);
  if (p == nullptr) return absl::InternalError("pcap_open_dead failed");
  w->pcap_ = p;
  pcap_dumper_t* d = pcap_dump_open(p, path.c_str());
  if (d == nullptr) {
    return absl::NotFoundError(Cat("cannot open pcap '", path, "' for writing: ", pcap_geterr(p)));
  }
  w->dumper_ = d;
  w->frame_.resize(kEthernet + kIpv4 + kUdp + kSnapLen);
  return w;
}

PcapWriter::~PcapWriter() { (void)Close(); }

void PcapWriter::Write(int64_t wall_ns, UdpAddress src, UdpAddress dst,
                       std::span<const uint8_t> payload) noexcept {
  if (dumper_ == nullptr) return;
  const size_t n = std::min(payload.size(), frame_.size() - kEthernet - kIpv4 - kUdp);
  uint8_t* f = frame_.data();
  // Ethernet: locally administered MACs, IPv4 ethertype.
  const uint8_t dst_mac[6] = {0x02, 0, 0, 0, 0, 2};
  const uint8_t src_mac[6] = {0x02, 0, 0, 0, 0, 1};
  std::memcpy(f, dst_mac, 6);
  std::memcpy(f + 6, src_mac, 6);
  StoreBe16(f + 12, 0x0800);
  uint8_t* ip = f + kEthernet;
  ip[0] = 0x45;
  ip[1] = 0;
  StoreBe16(ip + 2, static_cast<uint16_t>(kIpv4 + kUdp + n));
  StoreBe16(ip + 4, 0);
  StoreBe16(ip + 6, 0x4000);  // Don't fragment.
  ip[8] = 64;
  ip[9] = 17;  // UDP.
  StoreBe16(ip + 10, 0);
  StoreBe32(ip + 12, src.ip);
  StoreBe32(ip + 16, dst.ip);
  StoreBe16(ip + 10, Ipv4Checksum(ip));
  uint8_t* udp = ip + kIpv4;
  StoreBe16(udp, src.port);
  StoreBe16(udp + 2, dst.port);
  StoreBe16(udp + 4, static_cast<uint16_t>(kUdp + n));
  StoreBe16(udp + 6, 0);  // No checksum (allowed over IPv4).
  if (n != 0) std::memcpy(udp + kUdp, payload.data(), n);
  pcap_pkthdr h{};
  h.ts.tv_sec = static_cast<time_t>(wall_ns / 1'000'000'000);
  h.ts.tv_usec = static_cast<suseconds_t>(wall_ns % 1'000'000'000);  // Nanoseconds here.
  h.caplen = h.len = static_cast<bpf_u_int32>(kEthernet + kIpv4 + kUdp + n);
  pcap_dump(static_cast<u_char*>(dumper_), &h, f);
}

absl::Status PcapWriter::Close() {
  absl::Status st;
  if (dumper_ != nullptr) {
    pcap_dumper_t* d = static_cast<pcap_dumper_t*>(dumper_);
    if (pcap_dump_flush(d) != 0) st = absl::DataLossError(Cat("writing pcap '", path_, "' failed"));
    pcap_dump_close(d);
    dumper_ = nullptr;
  }
  if (pcap_ != nullptr) {
    pcap_close(static_cast<pcap_t*>(pcap_));
    pcap_ = nullptr;
  }
  return st;
}

absl::StatusOr<std::unique_ptr<PcapReader>> PcapReader::Open(const std::string& path,
                                                             const std::string& bpf_filter,
                                                             std::vector<uint16_t> dst_ports) {
  std::unique_ptr<PcapReader> r(new PcapReader());
  char err[PCAP_ERRBUF_SIZE] = {};
  pcap_t* p =
      pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
  if (p == nullptr) return absl::NotFoundError(Cat("cannot open pcap '", path, "': ", err));
  r->pcap_ = p;
  r->link_type_ = pcap_datalink(p);
  switch (r->link_type_) {
    case DLT_EN10MB:
    case DLT_RAW:
    case DLT_LINUX_SLL:
    case DLT_NULL:
    case DLT_LOOP:
#ifdef DLT_IPV4
    case DLT_IPV4:
#endif
      break;
    default:
      return absl::InvalidArgumentError(Cat("pcap '", path, "': link type ", r->link_type_, " (",
                                            pcap_datalink_val_to_name(r->link_type_),
                                            ") is not supported; use Ethernet, raw IP or SLL"));
  }
  if (!bpf_filter.empty()) {
    bpf_program prog;
    if (pcap_compile(p, &prog, bpf_filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
      return absl::InvalidArgumentError(Cat("pcap filter '", bpf_filter, "': ", pcap_geterr(p)));
    }
    const int rc = pcap_setfilter(p, &prog);
    pcap_freecode(&prog);
    if (rc != 0) {
      return absl::InvalidArgumentError(Cat("pcap filter '", bpf_filter, "': ", pcap_geterr(p)));
    }
  }
  r->ports_ = std::move(dst_ports);
  return r;
}

PcapReader::~PcapReader() {
  if (pcap_ != nullptr) pcap_close(static_cast<pcap_t*>(pcap_));
}

int PcapReader::Next(std::span<uint8_t> out, int64_t* ts_ns, UdpAddress* dst) noexcept {
  pcap_t* p = static_cast<pcap_t*>(pcap_);
  for (;;) {
    pcap_pkthdr* h = nullptr;
    const u_char* data = nullptr;
    const int rc = pcap_next_ex(p, &h, &data);
    if (rc == PCAP_ERROR_BREAK) return 0;  // End of file.
    if (rc != 1) return -1;
    ++counts_.frames;
    if (h->caplen < h->len) {
      ++counts_.truncated;
      continue;
    }
    const uint8_t* f = data;
    size_t n = h->caplen;
    // Link layer -> network protocol.
    uint16_t proto = 0;
    size_t off = 0;
    switch (link_type_) {
      case DLT_EN10MB:
        if (n < kEthernet) break;
        proto = LoadBe16(f + 12);
        off = kEthernet;
        while ((proto == 0x8100 || proto == 0x88A8) && n >= off + 4) {  // VLAN tags.
          proto = LoadBe16(f + off + 2);
          off += 4;
        }
        break;
      case DLT_LINUX_SLL:
        if (n < 16) break;
        proto = LoadBe16(f + 14);
        off = 16;
        break;
      case DLT_NULL:
      case DLT_LOOP:
        if (n < 4) break;
        proto = (f[0] == 2 || f[3] == 2) ? 0x0800 : 0x86DD;
        off = 4;
        break;
      default:  // Raw IP: the version nibble tells.
        if (n < 1) break;
        proto = (f[0] >> 4) == 4 ? 0x0800 : 0x86DD;
        off = 0;
        break;
    }
    const uint8_t* ip = f + off;
    const size_t ip_n = n - std::min(n, off);
    size_t udp_off = 0;
    uint32_t dst_ip = 0;
    if (proto == 0x0800) {
      if (ip_n < kIpv4 || (ip[0] >> 4) != 4) {
        ++counts_.skipped;
        continue;
      }
      const size_t ihl = size_t{ip[0] & 0x0Fu} * 4;
      const uint16_t frag = LoadBe16(ip + 6);
      if (ihl < kIpv4 || ip[9] != 17 || (frag & 0x3FFF) != 0) {  // Not UDP, or a fragment.
        ++counts_.skipped;
        continue;
      }
      udp_off = ihl;
      dst_ip = LoadBe32(ip + 16);
    } else if (proto == 0x86DD) {
      if (ip_n < 40 || ip[6] != 17) {
        ++counts_.skipped;
        continue;
      }
      udp_off = 40;
    } else {
      ++counts_.skipped;
      continue;
    }
    if (ip_n < udp_off + kUdp) {
      ++counts_.skipped;
      continue;
    }
    const uint8_t* udp = ip + udp_off;
    const uint16_t dport = LoadBe16(udp + 2);
    if (!ports_.empty() && std::find(ports_.begin(), ports_.end(), dport) == ports_.end()) {
      ++counts_.skipped;
      continue;
    }
    const size_t udp_len = LoadBe16(udp + 4);
    const size_t avail = ip_n - udp_off - kUdp;
    size_t len = udp_len >= kUdp ? std::min(udp_len - kUdp, avail) : avail;
    len = std::min(len, out.size());
    if (len == 0) {  // An empty datagram carries nothing (and 0 means end of file here).
      ++counts_.skipped;
      continue;
    }
    std::memcpy(out.data(), udp + kUdp, len);
    *ts_ns = int64_t{h->ts.tv_sec} * 1'000'000'000 + h->ts.tv_usec;  // Nanosecond precision.
    if (dst != nullptr) *dst = UdpAddress{dst_ip, dport};
    return static_cast<int>(len);
  }
}

absl::StatusOr<std::unique_ptr<ItchFileWriter>> ItchFileWriter::Open(const std::string& path) {
  std::unique_ptr<ItchFileWriter> w(new ItchFileWriter());
  w->path_ = path;
  w->buffer_.resize(1 << 16);
  w->f_ = std::fopen(path.c_str(), "wb");
  if (w->f_ == nullptr) {
    return absl::NotFoundError(
        Cat("cannot open ITCH file '", path, "' for writing: ", std::strerror(errno)));
  }
  std::setvbuf(w->f_, w->buffer_.data(), _IOFBF, w->buffer_.size());
  return w;
}

ItchFileWriter::~ItchFileWriter() { (void)Close(); }

void ItchFileWriter::Write(std::span<const uint8_t> message) noexcept {
  if (f_ == nullptr) return;
  uint8_t len[2];
  StoreBe16(len, static_cast<uint16_t>(message.size()));
  std::fwrite(len, 1, 2, f_);
  if (!message.empty()) std::fwrite(message.data(), 1, message.size(), f_);
}

absl::Status ItchFileWriter::Close() {
  if (f_ == nullptr) return absl::OkStatus();
  const bool bad = std::ferror(f_) != 0;
  const bool close_failed = std::fclose(f_) != 0;
  f_ = nullptr;
  if (bad || close_failed) {
    return absl::DataLossError(
        Cat("writing ITCH file '", path_, "' failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ItchFileReader>> ItchFileReader::Open(const std::string& path) {
  std::unique_ptr<ItchFileReader> r(new ItchFileReader());
  r->f_ = std::fopen(path.c_str(), "rb");
  if (r->f_ == nullptr) {
    return absl::NotFoundError(Cat("cannot open ITCH file '", path, "': ", std::strerror(errno)));
  }
  r->buffer_.resize(1 << 20);
  return r;
}

ItchFileReader::~ItchFileReader() {
  if (f_ != nullptr) std::fclose(f_);
}

bool ItchFileReader::Fill(size_t need) noexcept {
  if (end_ - begin_ >= need) return true;
  if (begin_ != 0) {
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  while (end_ < need && !eof_) {
    const size_t got = std::fread(buffer_.data() + end_, 1, buffer_.size() - end_, f_);
    end_ += got;
    if (got == 0) eof_ = true;
  }
  return end_ - begin_ >= need;
}

int ItchFileReader::Next(const uint8_t** message) noexcept {
  for (;;) {
    if (!Fill(2)) return end_ == begin_ && std::ferror(f_) == 0 ? 0 : -1;
    const size_t len = LoadBe16(buffer_.data() + begin_);
    if (!Fill(2 + len)) return -1;  // The buffer (1 MiB) always holds a 64 KiB record.
    *message = buffer_.data() + begin_ + 2;
    begin_ += 2 + len;
    if (len != 0) return static_cast<int>(len);  // Empty records carry nothing: skip them.
  }
}

}  // namespace qsig::feeds::internal
