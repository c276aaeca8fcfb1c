// Simulator: a deterministic exchange producing ITCH 5.0 order flow in MoldUDP64 packets.
//
// Model, per instrument:
//  - a latent fair value (in ticks) driven by a regime (mean-reverting to an anchor, or
//    trending), noise, and a latent order-flow pressure z (AR(1));
//  - z skews which side limit orders and marketable orders arrive on, and z also pushes the fair
//    value over the following steps, so order-flow imbalance leads price moves a little;
//  - limit orders arrive on a $0.01 grid with intensity decaying geometrically with distance
//    from the touch; cancels, partial cancels and replaces hit random resting orders;
//  - marketable flow executes specific resting orders FIFO at the touch ('E', sometimes 'C'),
//    never more than rests and never the last order of a side; arbitrage flow lifts/hits
//    quotes the fair value has moved through; occasional 'P' non-displayed trades.
// The simulator keeps its own book so that every message it emits is valid.
// Volatility, spread, order size and trade intensity are parameters (factors on the default
// market, 1 = unchanged, bit-identical output); scheduled regimes multiply them from an instant
// of the message clock on.
#include "qsig/feeds/simulator.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "internal/itch.h"
#include "internal/mold.h"
#include "internal/rng.h"

namespace qsig::feeds {
namespace {

namespace itch = internal::itch;
namespace mold = internal::mold;
using internal::Rng;

constexpr uint32_t kTick = 100;  // $0.01 in Price(4) units.
constexpr uint64_t kDirectoryEvery = 10'000;
constexpr uint64_t kStartOfDayNs = 34'200'000'000'000;  // 09:30:00.
constexpr double kMeanInterArrivalNs = 20'000;
constexpr size_t kTargetLiveOrders = 40;  // Per instrument; cancels scale with book size.

struct Msg {
  uint8_t len = 0;
  uint8_t bytes[itch::kMaxMessageLength];
};

struct SimOrder {
  uint32_t price = 0;  // Ticks.
  uint32_t shares = 0;
  bool bid = true;
  uint32_t live_index = 0;
};

struct SimInstrument {
  std::string symbol;
  uint16_t locate = 0;
  double fair = 0.0;    // Ticks.
  double anchor = 0.0;  // Mean-reversion target (ticks).
  double z = 0.0;       // Latent order-flow pressure.
  bool trending = false;
  double trend = 0.0;                             // Ticks per step while trending.
  std::map<uint32_t, std::deque<uint64_t>> bids;  // Tick price -> FIFO of refs.
  std::map<uint32_t, std::deque<uint64_t>> asks;
  std::vector<uint64_t> live;  // For uniform random choice of a resting order.
};

}  // namespace

struct Simulator::Impl {
  explicit Impl(const SimulatorOptions& o)
      : options(o), rng(o.seed), max_per_packet(std::clamp(o.max_messages_per_packet, 1, 0xFFFE)) {
    if (options.instruments.empty()) options.instruments = {"SIM"};
    std::stable_sort(options.regimes.begin(), options.regimes.end(),
                     [](const SimRegime& a, const SimRegime& b) { return a.at_s < b.at_s; });
    ApplyRegime(SimRegime{});
    options.session.resize(mold::kSessionSize, ' ');
    for (size_t i = 0; i < options.instruments.size(); ++i) {
      SimInstrument in;
      in.symbol = options.instruments[i].substr(0, itch::kStockSize);
      in.locate = static_cast<uint16_t>(i + 1);
      in.fair = (50.0 + 450.0 * rng.Uniform()) * 100.0;  // $50..$500 in ticks.
      in.anchor = in.fair;
      instruments.push_back(std::move(in));
    }
    Emit([&](uint8_t* p) { return itch::Encoder::SystemEvent(p, Now(), 'O'); });
    EmitDirectory();
    for (SimInstrument& in : instruments) Seed(in);
  }

  uint64_t Now() noexcept { return ts_ns; }

  void ApplyRegime(const SimRegime& r) {
    volatility = options.volatility * r.volatility;
    spread = options.spread * r.spread;
    order_size = options.order_size * r.order_size;
    trade_intensity = options.trade_intensity * r.trade_intensity;
  }

  void AdvanceRegimes() {
    while (next_regime < options.regimes.size() &&
           static_cast<double>(ts_ns - kStartOfDayNs) >= options.regimes[next_regime].at_s * 1e9) {
      ApplyRegime(options.regimes[next_regime++]);
    }
  }

  // `units` scaled by `factor`, at least 1 (exactly `units` when factor is 1).
  static uint32_t Scaled(uint32_t units, double factor) {
    return static_cast<uint32_t>(
        std::clamp<double>(std::llround(units * factor), 1.0, 1'000'000.0));
  }

  template <typename F>
  void Emit(F&& encode) {
    Msg m;
    m.len = static_cast<uint8_t>(encode(m.bytes));
    pending.push_back(m);
    ++generated;
    if (generated >= next_directory) {
      next_directory += kDirectoryEvery;
      EmitDirectory();
    }
  }

  void EmitDirectory() {
    for (const SimInstrument& in : instruments) {
      Msg m;
      m.len =
          static_cast<uint8_t>(itch::Encoder::StockDirectory(m.bytes, in.locate, ts_ns, in.symbol));
      pending.push_back(m);
      ++generated;
    }
  }

  void Seed(SimInstrument& in) {
    const auto center = static_cast<uint32_t>(std::llround(in.fair));
    for (uint32_t d = 0; d < 6; ++d) {
      const int n = 1 + static_cast<int>(rng.Below(2));
      for (int k = 0; k < n; ++k) {
        AddOrder(in, true, center - 1 - d, RandomShares());
        AddOrder(in, false, center + 1 + d, RandomShares());
      }
    }
  }

  uint32_t RandomShares() {
    return 100 * Scaled(static_cast<uint32_t>(1 + rng.Geometric(0.35)), order_size);
  }

  void AddOrder(SimInstrument& in, bool bid, uint32_t price_ticks, uint32_t shares) {
    const uint64_t ref = next_ref++;
    orders[ref] = SimOrder{price_ticks, shares, bid, static_cast<uint32_t>(in.live.size())};
    in.live.push_back(ref);
    (bid ? in.bids : in.asks)[price_ticks].push_back(ref);
    const char side = bid ? 'B' : 'S';
    if (rng.Bernoulli(0.05)) {
      Emit([&](uint8_t* p) {
        return itch::Encoder::AddOrderMpid(p, in.locate, Now(), ref, side, shares, in.symbol,
                                           price_ticks * kTick, "QSIG");
      });
    } else {
      Emit([&](uint8_t* p) {
        return itch::Encoder::AddOrder(p, in.locate, Now(), ref, side, shares, in.symbol,
                                       price_ticks * kTick);
      });
    }
  }

  // Drops an order from the simulator's own book (no message).
  void Forget(SimInstrument& in, uint64_t ref) {
    const auto it = orders.find(ref);
    SimOrder o = it->second;
    auto& side = o.bid ? in.bids : in.asks;
    auto level = side.find(o.price);
    auto& q = level->second;
    q.erase(std::find(q.begin(), q.end(), ref));
    if (q.empty()) side.erase(level);
    const uint64_t last = in.live.back();
    in.live[o.live_index] = last;
    orders[last].live_index = o.live_index;
    in.live.pop_back();
    orders.erase(it);
  }

  size_t SideOrders(const SimInstrument& in, bool bid) const {
    size_t n = 0;
    for (const auto& [px, q] : bid ? in.bids : in.asks) n += q.size();
    return n;
  }

  void EvolveLatent(SimInstrument& in) {
    in.z = 0.97 * in.z + 0.25 * rng.Normal();
    if (rng.Bernoulli(0.0005)) {
      in.trending = !in.trending;
      if (in.trending) {
        in.trend = (rng.Bernoulli(0.5) ? 1.0 : -1.0) * (0.005 + 0.015 * rng.Uniform());
      } else {
        in.anchor = in.fair;
      }
    }
    const double drift = in.trending ? in.trend : -0.002 * (in.fair - in.anchor);
    // z leads: flow is skewed by z now, the fair value follows it over the next steps.
    in.fair += drift + volatility * (0.04 * in.z + 0.12 * rng.Normal());
    in.fair = std::max(in.fair, 100.0);  // Keep prices above $1.
  }

  void LimitOrder(SimInstrument& in, bool bid) {
    // Ticks from the fair value: 1 + d behind the reference quote, scaled by the spread factor.
    const int64_t d = Scaled(static_cast<uint32_t>(1 + rng.Geometric(0.45)), spread);
    int64_t price;
    if (bid) {
      price = static_cast<int64_t>(std::ceil(in.fair)) - d;
      if (!in.asks.empty()) price = std::min<int64_t>(price, in.asks.begin()->first - 1);
    } else {
      price = static_cast<int64_t>(std::floor(in.fair)) + d;
      if (!in.bids.empty()) price = std::max<int64_t>(price, in.bids.rbegin()->first + 1);
    }
    price = std::max<int64_t>(price, 1);
    AddOrder(in, bid, static_cast<uint32_t>(price), RandomShares());
  }

  void CancelOrder(SimInstrument& in) {
    if (in.live.empty()) return;
    const uint64_t ref = in.live[rng.Below(in.live.size())];
    SimOrder& o = orders[ref];
    // Keep both sides populated: the last order of a side is never pulled.
    if (SideOrders(in, o.bid) <= 1) return;
    if (o.shares >= 200 && rng.Bernoulli(0.3)) {
      const uint32_t cancelled = 100 * (1 + static_cast<uint32_t>(rng.Below(o.shares / 100 - 1)));
      o.shares -= cancelled;
      Emit([&](uint8_t* p) { return itch::Encoder::Cancel(p, in.locate, Now(), ref, cancelled); });
      return;
    }
    Forget(in, ref);
    Emit([&](uint8_t* p) { return itch::Encoder::Delete(p, in.locate, Now(), ref); });
  }

  void ReplaceOrder(SimInstrument& in) {
    if (in.live.empty()) return;
    const uint64_t ref = in.live[rng.Below(in.live.size())];
    const SimOrder o = orders[ref];
    int64_t price = int64_t{o.price} + static_cast<int64_t>(rng.Below(3)) - 1;
    if (o.bid && !in.asks.empty()) price = std::min<int64_t>(price, in.asks.begin()->first - 1);
    if (!o.bid && !in.bids.empty()) price = std::max<int64_t>(price, in.bids.rbegin()->first + 1);
    price = std::max<int64_t>(price, 1);
    const uint32_t shares = RandomShares();
    Forget(in, ref);
    const uint64_t new_ref = next_ref++;
    orders[new_ref] = SimOrder{static_cast<uint32_t>(price), shares, o.bid,
                               static_cast<uint32_t>(in.live.size())};
    in.live.push_back(new_ref);
    (o.bid ? in.bids : in.asks)[static_cast<uint32_t>(price)].push_back(new_ref);
    Emit([&](uint8_t* p) {
      return itch::Encoder::Replace(p, in.locate, Now(), ref, new_ref, shares,
                                    static_cast<uint32_t>(price) * kTick);
    });
  }

  // A marketable order that walks the opposite side FIFO from the touch.
  void MarketOrder(SimInstrument& in, bool buy, uint32_t quantity) {
    auto& side = buy ? in.asks : in.bids;
    uint32_t remaining = quantity;
    size_t resting = SideOrders(in, !buy);
    while (remaining > 0 && resting > 1) {
      auto level = buy ? side.begin() : std::prev(side.end());
      const uint64_t ref = level->second.front();
      SimOrder& o = orders[ref];
      const uint32_t fill = std::min(remaining, o.shares);
      const uint32_t price = o.price;
      const uint64_t match = next_match++;
      if (rng.Bernoulli(0.03)) {
        Emit([&](uint8_t* p) {
          return itch::Encoder::ExecutedWithPrice(p, in.locate, Now(), ref, fill, match, 'Y',
                                                  price * kTick);
        });
      } else {
        Emit([&](uint8_t* p) {
          return itch::Encoder::Executed(p, in.locate, Now(), ref, fill, match);
        });
      }
      remaining -= fill;
      o.shares -= fill;
      if (o.shares == 0) {
        Forget(in, ref);
        --resting;
      }
    }
  }

  void NonDisplayedTrade(SimInstrument& in, bool buy) {
    if (in.bids.empty() || in.asks.empty()) return;
    const uint32_t price = buy ? in.asks.begin()->first : in.bids.rbegin()->first;
    const uint64_t match = next_match++;
    const uint32_t shares = RandomShares();
    // Side is the resting non-displayed order's side: a buyer lifts a hidden sell.
    Emit([&](uint8_t* p) {
      return itch::Encoder::Trade(p, in.locate, Now(), 0, buy ? 'S' : 'B', shares, in.symbol,
                                  price * kTick, match);
    });
  }

  void Step() {
    SimInstrument& in = instruments[rng.Below(instruments.size())];
    ts_ns += static_cast<uint64_t>(rng.Exponential(kMeanInterArrivalNs)) + 1;
    AdvanceRegimes();
    EvolveLatent(in);

    // Refill a thin side first so the book stays two-sided and a few levels deep.
    if (in.bids.size() < 3) return LimitOrder(in, true);
    if (in.asks.size() < 3) return LimitOrder(in, false);

    const double pressure = std::tanh(in.z);
    const double best_bid = in.bids.rbegin()->first;
    const double best_ask = in.asks.begin()->first;
    // Arbitrage: the fair value has moved through a quote; take it.
    if (in.fair > best_ask + 0.5 && rng.Bernoulli(0.5)) {
      return MarketOrder(in, true, RandomShares());
    }
    if (in.fair < best_bid - 0.5 && rng.Bernoulli(0.5)) {
      return MarketOrder(in, false, RandomShares());
    }

    const double w_add = 0.45;
    const double w_cancel = 0.20 * static_cast<double>(in.live.size()) / kTargetLiveOrders;
    const double w_replace = 0.05;
    const double w_market = 0.10 * trade_intensity;
    const double w_trade = 0.03 * trade_intensity;
    double u = rng.Uniform() * (w_add + w_cancel + w_replace + w_market + w_trade);
    if ((u -= w_add) < 0) return LimitOrder(in, rng.Bernoulli(0.5 + 0.2 * pressure));
    if ((u -= w_cancel) < 0) return CancelOrder(in);
    if ((u -= w_replace) < 0) return ReplaceOrder(in);
    if ((u -= w_market) < 0) {
      return MarketOrder(in, rng.Bernoulli(0.5 + 0.3 * pressure), RandomShares());
    }
    NonDisplayedTrade(in, rng.Bernoulli(0.5 + 0.3 * pressure));
  }

  // Next session name: the trailing digits (before any padding) count up; a name without
  // digits gets its last character replaced by '1'.
  static std::string NextSessionName(std::string name) {
    name.resize(mold::kSessionSize, ' ');
    size_t end = name.find_last_not_of(' ');
    if (end == std::string::npos) return "1         ";
    size_t i = end + 1;
    while (i > 0 && name[i - 1] >= '0' && name[i - 1] <= '9') {
      if (name[i - 1] != '9') {
        ++name[i - 1];
        return name;
      }
      name[i - 1] = '0';
      --i;
    }
    if (i == end + 1) name[end] = '1';  // No digits at all.
    return name;
  }

  void StartNewSession() {
    options.session = NextSessionName(options.session);
    sequence = 1;
    pending.clear();
    orders.clear();
    for (SimInstrument& in : instruments) {
      in.bids.clear();
      in.asks.clear();
      in.live.clear();
    }
    generated = 0;
    next_directory = kDirectoryEvery;
    Emit([&](uint8_t* p) { return itch::Encoder::SystemEvent(p, Now(), 'O'); });
    EmitDirectory();
    for (SimInstrument& in : instruments) Seed(in);
  }

  size_t NextPacket(std::span<uint8_t> buffer) {
    if (buffer.size() < mold::kHeaderSize) return 0;
    if (restart_pending) {
      // End of Session for the old one (header only), then the new session begins.
      restart_pending = false;
      mold::WriteHeader(buffer.data(), options.session, sequence, mold::kEndOfSession);
      StartNewSession();
      return mold::kHeaderSize;
    }
    while (pending.size() < static_cast<size_t>(max_per_packet)) Step();
    size_t off = mold::kHeaderSize;
    uint16_t count = 0;
    while (count < max_per_packet && !pending.empty()) {
      const Msg& m = pending.front();
      if (buffer.size() - off < mold::kBlockLengthSize + m.len) break;
      off += mold::WriteBlock(buffer.data() + off, m.bytes, m.len);
      pending.pop_front();
      ++count;
    }
    mold::WriteHeader(buffer.data(), options.session, sequence, count);
    sequence += count;
    return off;
  }

  SimulatorOptions options;
  Rng rng;
  int max_per_packet;
  std::vector<SimInstrument> instruments;
  std::unordered_map<uint64_t, SimOrder> orders;
  std::deque<Msg> pending;
  uint64_t generated = 0;
  uint64_t next_directory = kDirectoryEvery;
  uint64_t ts_ns = kStartOfDayNs;
  uint64_t next_ref = 1;
  uint64_t next_match = 1;
  uint64_t sequence = 1;
  bool restart_pending = false;
  size_t next_regime = 0;
  double volatility = 1, spread = 1, order_size = 1, trade_intensity = 1;  // In effect now.
};

Simulator::Simulator(const SimulatorOptions& options) : impl_(std::make_unique<Impl>(options)) {}
Simulator::~Simulator() = default;

size_t Simulator::NextPacket(std::span<uint8_t> buffer) { return impl_->NextPacket(buffer); }

uint64_t Simulator::next_sequence() const noexcept { return impl_->sequence; }

void Simulator::RestartSession() { impl_->restart_pending = true; }

std::string_view Simulator::session() const noexcept { return impl_->options.session; }

double Simulator::clock_s() const noexcept {
  return static_cast<double>(impl_->ts_ns - kStartOfDayNs) * 1e-9;
}

size_t Simulator::regimes_applied() const noexcept { return impl_->next_regime; }

}  // namespace qsig::feeds
