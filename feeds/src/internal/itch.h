// ITCH 5.0 wire format: message lengths, field offsets, and an encoder.
//
// The decoder (feed_processor.cc) reads fields straight out of the packet buffer with these
// offsets; the encoder is used by the simulator and by tests, so both sides share one layout.
// Every message starts with type(1) stock_locate(2) tracking_number(2) timestamp(6).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "internal/endian.h"

namespace qsig::feeds::internal::itch {

// Common header.
inline constexpr size_t kTypeOffset = 0;
inline constexpr size_t kLocateOffset = 1;
inline constexpr size_t kTrackingOffset = 3;
inline constexpr size_t kTimestampOffset = 5;
inline constexpr size_t kHeaderSize = 11;
inline constexpr size_t kStockSize = 8;

// Price(4): 4 implied decimals.
inline constexpr double kPriceScale = 1e4;

// Exact length of each message type; 0 = unknown type.
inline constexpr std::array<uint8_t, 256> kMessageLength = [] {
  std::array<uint8_t, 256> t{};
  t['S'] = 12;  // System event.
  t['R'] = 39;  // Stock directory.
  t['H'] = 25;  // Stock trading action.
  t['Y'] = 20;  // Reg SHO restriction.
  t['L'] = 26;  // Market participant position.
  t['V'] = 35;  // MWCB decline level.
  t['W'] = 12;  // MWCB status.
  t['K'] = 28;  // IPO quoting period update.
  t['J'] = 35;  // LULD auction collar.
  t['h'] = 21;  // Operational halt.
  t['A'] = 36;  // Add order, no MPID.
  t['F'] = 40;  // Add order with MPID attribution.
  t['E'] = 31;  // Order executed.
  t['C'] = 36;  // Order executed with price.
  t['X'] = 23;  // Order cancel.
  t['D'] = 19;  // Order delete.
  t['U'] = 35;  // Order replace.
  t['P'] = 44;  // Trade (non-cross).
  t['Q'] = 40;  // Cross trade.
  t['B'] = 19;  // Broken trade.
  t['I'] = 50;  // NOII.
  t['N'] = 20;  // Retail price improvement indicator.
  t['O'] = 48;  // Direct listing with capital raise price discovery.
  return t;
}();
inline constexpr size_t kMaxMessageLength = 50;

// 'S' system event.
inline constexpr size_t kSystemEventCode = 11;
// 'R' stock directory.
inline constexpr size_t kDirStock = 11;
inline constexpr size_t kDirMarketCategory = 19;
inline constexpr size_t kDirFinancialStatus = 20;
inline constexpr size_t kDirRoundLotSize = 21;
inline constexpr size_t kDirRoundLotsOnly = 25;
inline constexpr size_t kDirIssueClassification = 26;
inline constexpr size_t kDirIssueSubType = 27;
inline constexpr size_t kDirAuthenticity = 29;
inline constexpr size_t kDirShortSaleThreshold = 30;
inline constexpr size_t kDirIpoFlag = 31;
inline constexpr size_t kDirLuldTier = 32;
inline constexpr size_t kDirEtpFlag = 33;
inline constexpr size_t kDirEtpLeverage = 34;
inline constexpr size_t kDirInverse = 38;
// 'A' / 'F' add order.
inline constexpr size_t kAddRef = 11;
inline constexpr size_t kAddSide = 19;
inline constexpr size_t kAddShares = 20;
inline constexpr size_t kAddStock = 24;
inline constexpr size_t kAddPrice = 32;
inline constexpr size_t kAddAttribution = 36;
// 'E' / 'C' executed.
inline constexpr size_t kExecRef = 11;
inline constexpr size_t kExecShares = 19;
inline constexpr size_t kExecMatch = 23;
inline constexpr size_t kExecPrintable = 31;
inline constexpr size_t kExecPrice = 32;
// 'X' cancel / 'D' delete.
inline constexpr size_t kCancelRef = 11;
inline constexpr size_t kCancelShares = 19;
inline constexpr size_t kDeleteRef = 11;
// 'U' replace.
inline constexpr size_t kReplaceOrigRef = 11;
inline constexpr size_t kReplaceNewRef = 19;
inline constexpr size_t kReplaceShares = 27;
inline constexpr size_t kReplacePrice = 31;
// 'P' trade (non-cross).
inline constexpr size_t kTradeRef = 11;
inline constexpr size_t kTradeSide = 19;
inline constexpr size_t kTradeShares = 20;
inline constexpr size_t kTradeStock = 24;
inline constexpr size_t kTradePrice = 32;
inline constexpr size_t kTradeMatch = 36;

// 'H' stock trading action.
inline constexpr size_t kActionStock = 11;
inline constexpr size_t kActionState = 19;  // 'H' halted, 'P' paused, 'Q' quotation only, 'T'.
inline constexpr size_t kActionReserved = 20;
inline constexpr size_t kActionReason = 21;
// 'Q' cross trade.
inline constexpr size_t kCrossShares = 11;  // u64.
inline constexpr size_t kCrossStock = 19;
inline constexpr size_t kCrossPrice = 27;
inline constexpr size_t kCrossMatch = 31;
inline constexpr size_t kCrossType = 39;
// 'B' broken trade.
inline constexpr size_t kBrokenMatch = 11;

// Writes ITCH messages into caller-provided storage of at least kMaxMessageLength bytes.
// Each function returns the message length. Stateless; safe from any thread.
class Encoder {
 public:
  static size_t SystemEvent(uint8_t* p, uint64_t ts, char code) noexcept {
    Header(p, 'S', 0, ts);
    p[kSystemEventCode] = static_cast<uint8_t>(code);
    return 12;
  }
  static size_t StockDirectory(uint8_t* p, uint16_t locate, uint64_t ts,
                               std::string_view stock) noexcept {
    Header(p, 'R', locate, ts);
    Stock(p + kDirStock, stock);
    p[kDirMarketCategory] = 'Q';
    p[kDirFinancialStatus] = 'N';
    StoreBe32(p + kDirRoundLotSize, 100);
    p[kDirRoundLotsOnly] = 'N';
    p[kDirIssueClassification] = 'C';
    p[kDirIssueSubType] = 'Z';
    p[kDirIssueSubType + 1] = ' ';
    p[kDirAuthenticity] = 'P';
    p[kDirShortSaleThreshold] = 'N';
    p[kDirIpoFlag] = 'N';
    p[kDirLuldTier] = '1';
    p[kDirEtpFlag] = 'N';
    StoreBe32(p + kDirEtpLeverage, 0);
    p[kDirInverse] = 'N';
    return 39;
  }
  static size_t AddOrder(uint8_t* p, uint16_t locate, uint64_t ts, uint64_t ref, char side,
                         uint32_t shares, std::string_view stock, uint32_t price) noexcept {
    Header(p, 'A', locate, ts);
    StoreBe64(p + kAddRef, ref);
    p[kAddSide] = static_cast<uint8_t>(side);
    StoreBe32(p + kAddShares, shares);
    Stock(p + kAddStock, stock);
    StoreBe32(p + kAddPrice, price);
    return 36;
  }
  static size_t AddOrderMpid(uint8_t* p, uint16_t locate, uint64_t ts, uint64_t ref, char side,
                             uint32_t shares, std::string_view stock, uint32_t price,
                             std::string_view mpid) noexcept {
    AddOrder(p, locate, ts, ref, side, shares, stock, price);
    p[kTypeOffset] = 'F';
    Alpha(p + kAddAttribution, mpid, 4);
    return 40;
  }
  static size_t Executed(uint8_t* p, uint16_t locate, uint64_t ts, uint64_t ref, uint32_t shares,
                         uint64_t match) noexcept {
    Header(p, 'E', locate, ts);
    StoreBe64(p + kExecRef, ref);
    StoreBe32(p + kExecShares, shares);
    StoreBe64(p + kExecMatch, match);
    return 31;
  }
  static size_t ExecutedWithPrice(uint8_t* p, uint16_t locate, uint64_t ts, uint64_t ref,
                                  uint32_t shares, uint64_t match, char printable,
                                  uint32_t price) noexcept {
    Executed(p, locate, ts, ref, shares, match);
    p[kTypeOffset] = 'C';
    p[kExecPrintable] = static_cast<uint8_t>(printable);
    StoreBe32(p + kExecPrice, price);
    return 36;
  }
  static size_t Cancel(uint8_t* p, uint16_t locate, uint64_t ts, uint64_t ref,
                       uint32_t shares) noexcept {
    Header(p, 'X', locate, ts);
    StoreBe64(p + kCancelRef, ref);
    StoreBe32(p + kCancelShares, shares);
    return 23;
  }
  static size_t Delete(uint8_t* p, uint16_t locate, uint64_t ts, uint64_t ref) noexcept {
    Header(p, 'D', locate, ts);
    StoreBe64(p + kDeleteRef, ref);
    return 19;
  }
  static size_t Replace(uint8_t* p, uint16_t locate, uint64_t ts, uint64_t orig_ref,
                        uint64_t new_ref, uint32_t shares, uint32_t price) noexcept {
    Header(p, 'U', locate, ts);
    StoreBe64(p + kReplaceOrigRef, orig_ref);
    StoreBe64(p + kReplaceNewRef, new_ref);
    StoreBe32(p + kReplaceShares, shares);
    StoreBe32(p + kReplacePrice, price);
    return 35;
  }
  static size_t Trade(uint8_t* p, uint16_t locate, uint64_t ts, uint64_t ref, char side,
                      uint32_t shares, std::string_view stock, uint32_t price,
                      uint64_t match) noexcept {
    Header(p, 'P', locate, ts);
    StoreBe64(p + kTradeRef, ref);
    p[kTradeSide] = static_cast<uint8_t>(side);
    StoreBe32(p + kTradeShares, shares);
    Stock(p + kTradeStock, stock);
    StoreBe32(p + kTradePrice, price);
    StoreBe64(p + kTradeMatch, match);
    return 44;
  }
  static size_t TradingAction(uint8_t* p, uint16_t locate, uint64_t ts, std::string_view stock,
                              char state) noexcept {
    Header(p, 'H', locate, ts);
    Stock(p + kActionStock, stock);
    p[kActionState] = static_cast<uint8_t>(state);
    p[kActionReserved] = ' ';
    Alpha(p + kActionReason, state == 'T' ? "" : "T1", 4);
    return 25;
  }
  static size_t CrossTrade(uint8_t* p, uint16_t locate, uint64_t ts, uint64_t shares,
                           std::string_view stock, uint32_t price, uint64_t match,
                           char cross_type) noexcept {
    Header(p, 'Q', locate, ts);
    StoreBe64(p + kCrossShares, shares);
    Stock(p + kCrossStock, stock);
    StoreBe32(p + kCrossPrice, price);
    StoreBe64(p + kCrossMatch, match);
    p[kCrossType] = static_cast<uint8_t>(cross_type);
    return 40;
  }
  static size_t BrokenTrade(uint8_t* p, uint16_t locate, uint64_t ts, uint64_t match) noexcept {
    Header(p, 'B', locate, ts);
    StoreBe64(p + kBrokenMatch, match);
    return 19;
  }
  // Any other known type with a zeroed body of the right length (for decoders that skip it).
  static size_t Generic(uint8_t* p, char type, uint16_t locate, uint64_t ts) noexcept {
    const size_t n = kMessageLength[static_cast<uint8_t>(type)];
    std::memset(p, 0, n);
    Header(p, type, locate, ts);
    return n;
  }

 private:
  static void Header(uint8_t* p, char type, uint16_t locate, uint64_t ts) noexcept {
    p[kTypeOffset] = static_cast<uint8_t>(type);
    StoreBe16(p + kLocateOffset, locate);
    StoreBe16(p + kTrackingOffset, 0);
    StoreBe48(p + kTimestampOffset, ts);
  }
  static void Alpha(uint8_t* p, std::string_view s, size_t width) noexcept {
    for (size_t i = 0; i < width; ++i) p[i] = i < s.size() ? static_cast<uint8_t>(s[i]) : ' ';
  }
  static void Stock(uint8_t* p, std::string_view s) noexcept { Alpha(p, s, kStockSize); }
};

}  // namespace qsig::feeds::internal::itch
