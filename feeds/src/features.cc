#include "internal/features.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "internal/itch.h"
#include "internal/str.h"
#include "qsig/feeds/feed_processor.h"

namespace qsig::feeds {

const std::vector<std::string>& DefaultFeatureNames() {
  static const std::vector<std::string> kNames = {
      "ret_1",        "ret_10",       "ret_50",     "spread_bps",
      "imbalance_l1", "imbalance_l5", "trade_flow", "microprice_dev_bps",
  };
  return kNames;
}

namespace {

using internal::Cat;
using internal::CompiledFeature;
using internal::FeatureKind;

struct Compiled {
  CompiledFeature feature;
  std::string name;
};

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// Reads and removes params; reports unknown ones at the end.
class Params {
 public:
  Params(const FeatureSpec& spec, int index) : spec_(spec), index_(index), left_(spec.params) {}

  absl::Status Int(const char* key, int def, int lo, int hi, int* out) {
    *out = def;
    auto it = left_.find(key);
    if (it == left_.end()) return absl::OkStatus();
    const std::string v = it->second;
    left_.erase(it);
    int x = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (ec != std::errc() || end != v.data() + v.size() || x < lo || x > hi) {
      return Error(Cat(key, "='", v, "' must be an integer in ", lo, "..", hi));
    }
    *out = x;
    return absl::OkStatus();
  }
  absl::Status Real(const char* key, double def, double lo, double hi, bool lo_open, double* out) {
    *out = def;
    auto it = left_.find(key);
    if (it == left_.end()) return absl::OkStatus();
    const std::string v = it->second;
    left_.erase(it);
    double x = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (ec != std::errc() || end != v.data() + v.size() || !std::isfinite(x) || x > hi ||
        (lo_open ? x <= lo : x < lo)) {
      return Error(Cat(key, "='", v, "' must be a number in ", lo_open ? "(" : "[", Num(lo), ", ",
                       Num(hi), "]"));
    }
    *out = x;
    return absl::OkStatus();
  }
  absl::Status Done() {
    if (left_.empty()) return absl::OkStatus();
    return Error(Cat("unknown parameter '", left_.begin()->first, "'"));
  }
  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(Cat("features[", index_, "] (", spec_.name, "): ", what));
  }

 private:
  const FeatureSpec& spec_;
  int index_;
  std::map<std::string, std::string> left_;
};

constexpr int kMaxHorizon = static_cast<int>(internal::EngineState::kHistory) - 1;
constexpr int kMaxLevels = 64;

absl::StatusOr<Compiled> CompileOne(const FeatureSpec& spec, int index) {
  Params p(spec, index);
  Compiled c;
  CompiledFeature& f = c.feature;
  const std::string& k = spec.name;
  if (k == "ret" || k == "mid_return" || k == "micro_ret") {
    f.kind = k == "micro_ret" ? FeatureKind::kMicroRet : FeatureKind::kRet;
    if (absl::Status st = p.Int("horizon", 1, 1, kMaxHorizon, &f.n); !st.ok()) return st;
    c.name = Cat(k == "micro_ret" ? "micro_ret_" : "ret_", f.n);
  } else if (k == "spread_bps") {
    f.kind = FeatureKind::kSpreadBps;
    c.name = k;
  } else if (k == "imbalance") {
    f.kind = FeatureKind::kImbalance;
    if (absl::Status st = p.Int("levels", 1, 1, kMaxLevels, &f.n); !st.ok()) return st;
    c.name = Cat("imbalance_l", f.n);
  } else if (k == "book_pressure") {
    f.kind = FeatureKind::kBookPressure;
    if (absl::Status st = p.Int("levels", 5, 1, kMaxLevels, &f.n); !st.ok()) return st;
    if (absl::Status st = p.Real("decay", 0.5, 0.0, 1.0, true, &f.x); !st.ok()) return st;
    c.name = Cat("book_pressure_l", f.n, f.x == 0.5 ? "" : "_d", f.x == 0.5 ? "" : Num(f.x));
  } else if (k == "trade_flow") {
    f.kind = FeatureKind::kTradeFlow;
    if (absl::Status st = p.Real("alpha", internal::kTradeFlowAlpha, 0.0, 1.0, true, &f.x);
        !st.ok())
      return st;
    c.name = f.x == internal::kTradeFlowAlpha ? "trade_flow" : Cat("trade_flow_a", Num(f.x));
  } else if (k == "microprice_dev_bps") {
    f.kind = FeatureKind::kMicropriceDevBps;
    c.name = k;
  } else if (k == "realized_vol") {
    f.kind = FeatureKind::kRealizedVol;
    if (absl::Status st = p.Int("horizon", 50, 2, kMaxHorizon, &f.n); !st.ok()) return st;
    c.name = Cat("realized_vol_", f.n);
  } else if (k == "time_since_trade_ms") {
    f.kind = FeatureKind::kTimeSinceTradeMs;
    if (absl::Status st = p.Real("cap_ms", 60'000, 0.0, 86'400'000, true, &f.x); !st.ok())
      return st;
    c.name = k;
  } else if (k == "arrival_rate") {
    f.kind = FeatureKind::kArrivalRate;
    double hl_ms = 0;
    if (absl::Status st = p.Real("halflife_ms", 100, 0.0, 3'600'000, true, &hl_ms); !st.ok())
      return st;
    f.x = hl_ms * 1e6;  // ns
    c.name = Cat("arrival_rate_", Num(hl_ms), "ms");
  } else if (k == "log_depth") {
    f.kind = FeatureKind::kLogDepth;
    if (absl::Status st = p.Int("levels", 5, 1, kMaxLevels, &f.n); !st.ok()) return st;
    c.name = Cat("log_depth_l", f.n);
  } else {
    std::string known;
    for (const FeatureKindInfo& info : FeatureKinds())
      known += (known.empty() ? "" : ", ") + info.name;
    return p.Error(Cat("unknown feature; known: ", known));
  }
  if (absl::Status st = p.Done(); !st.ok()) return st;
  if (!spec.alias.empty()) c.name = spec.alias;
  return c;
}

}  // namespace

const std::vector<FeatureKindInfo>& FeatureKinds() {
  static const std::vector<FeatureKindInfo> kKinds = {
      {"ret", "horizon=1 (updates, 1..255)",
       "1e4 * ln(mid / mid `horizon` updates ago) over this instrument; 0 until then"},
      {"micro_ret", "horizon=1 (updates, 1..255)", "same as ret over the microprice"},
      {"spread_bps", "", "(ask - bid) / mid * 1e4"},
      {"imbalance", "levels=1 (1..64)",
       "(bid size - ask size) / (bid size + ask size), sizes summed over the best `levels`"},
      {"book_pressure", "levels=5 (1..64), decay=0.5 (0..1]",
       "imbalance with level i weighted decay^i (i = 0 at the touch)"},
      {"trade_flow", "alpha=0.05 (0..1]",
       "EWMA(signed executed volume) / EWMA(executed volume); + = buyer-initiated; 0 before any"},
      {"microprice_dev_bps", "", "(microprice - mid) / mid * 1e4"},
      {"realized_vol", "horizon=50 (updates, 2..255)",
       "1e4 * sqrt(sum of squared 1-update log mid returns over `horizon` updates); 0 until then"},
      {"time_since_trade_ms", "cap_ms=60000",
       "exchange time since this instrument's last trade or cross, capped; cap before any"},
      {"arrival_rate", "halflife_ms=100",
       "order arrivals (adds) per second, exponentially weighted with this half-life"},
      {"log_depth", "levels=5 (1..64)", "ln(1 + shares on the best `levels` of both sides)"},
  };
  return kKinds;
}

std::vector<FeatureSpec> DefaultFeatureSpecs() {
  return {
      {"ret", {{"horizon", "1"}}},
      {"ret", {{"horizon", "10"}}},
      {"ret", {{"horizon", "50"}}},
      {"spread_bps"},
      {"imbalance", {{"levels", "1"}}},
      {"imbalance", {{"levels", "5"}}},
      {"trade_flow"},
      {"microprice_dev_bps"},
  };
}

absl::StatusOr<std::vector<std::string>> FeatureNames(const std::vector<FeatureSpec>& specs_in) {
  const std::vector<FeatureSpec> specs = specs_in.empty() ? DefaultFeatureSpecs() : specs_in;
  if (specs.size() > static_cast<size_t>(kMaxFeatures)) {
    return absl::InvalidArgumentError(Cat("features: ", specs.size(), " entries, at most ",
                                          kMaxFeatures, " fit a FeatureVector"));
  }
  std::vector<std::string> names;
  for (size_t i = 0; i < specs.size(); ++i) {
    absl::StatusOr<Compiled> c = CompileOne(specs[i], static_cast<int>(i));
    if (!c.ok()) return c.status();
    if (std::find(names.begin(), names.end(), c->name) != names.end()) {
      return absl::InvalidArgumentError(Cat("features[", i, "] (", specs[i].name, "): name '",
                                            c->name, "' is used twice; set an alias"));
    }
    names.push_back(c->name);
  }
  return names;
}

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Splits on `sep` (and newlines when sep is ',') outside () and {}.
std::vector<std::string_view> SplitTop(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    const char c = i < s.size() ? s[i] : sep;
    if (c == '(' || c == '{') ++depth;
    if (c == ')' || c == '}') --depth;
    if (depth == 0 && (c == sep || (sep == ',' && c == '\n') || i == s.size())) {
      const std::string_view item = Trim(s.substr(start, i - start));
      if (!item.empty()) out.push_back(item);
      start = i + 1;
    }
  }
  return out;
}

absl::Status KeyValues(std::string_view body, char eq, size_t index, FeatureSpec* spec, bool yaml) {
  for (std::string_view kv : SplitTop(body, ',')) {
    const size_t e = kv.find(eq);
    if (e == std::string_view::npos) {
      return absl::InvalidArgumentError(
          Cat("features[", index, "]: '", kv, "' is not key", std::string(1, eq), "value"));
    }
    const std::string key(Trim(kv.substr(0, e)));
    std::string value(Trim(kv.substr(e + 1)));
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
        value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    if (yaml && key == "name") {
      spec->name = value;
    } else if (key == "as" || key == "alias") {
      spec->alias = value;
    } else {
      spec->params[key] = value;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<FeatureSpec>> ParseFeatureSpecs(std::string_view text) {
  std::vector<FeatureSpec> out;
  int depth = 0;
  for (const char c : text) {
    depth += (c == '(' || c == '{') ? 1 : (c == ')' || c == '}') ? -1 : 0;
    if (depth < 0) break;
  }
  if (depth != 0) {
    return absl::InvalidArgumentError(
        Cat("features: unbalanced parentheses or braces in '", text, "'"));
  }
  std::vector<std::string_view> items = SplitTop(text, ',');
  for (size_t i = 0; i < items.size(); ++i) {
    std::string_view item = items[i];
    if (item.front() == '-') item = Trim(item.substr(1));  // YAML list dash.
    FeatureSpec spec;
    if (item.front() == '{') {
      if (item.back() != '}') {
        return absl::InvalidArgumentError(Cat("features[", i, "]: '", item, "' lacks '}'"));
      }
      if (absl::Status st = KeyValues(item.substr(1, item.size() - 2), ':', i, &spec, true);
          !st.ok())
        return st;
      if (spec.name.empty()) {
        return absl::InvalidArgumentError(Cat("features[", i, "]: '", item, "' has no name:"));
      }
    } else {
      const size_t as = item.rfind(" as ");
      if (as != std::string_view::npos) {
        spec.alias = std::string(Trim(item.substr(as + 4)));
        item = Trim(item.substr(0, as));
      }
      const size_t open = item.find('(');
      if (open == std::string_view::npos) {
        spec.name = std::string(item);
      } else {
        if (item.back() != ')') {
          return absl::InvalidArgumentError(Cat("features[", i, "]: '", item, "' lacks ')'"));
        }
        spec.name = std::string(Trim(item.substr(0, open)));
        if (absl::Status st =
                KeyValues(item.substr(open + 1, item.size() - open - 2), '=', i, &spec, false);
            !st.ok()) {
          return st;
        }
      }
    }
    out.push_back(std::move(spec));
  }
  absl::StatusOr<std::vector<std::string>> names = FeatureNames(out);
  if (!names.ok()) return names.status();
  return out;
}

std::string FormatFeatureSpecs(const std::vector<FeatureSpec>& specs) {
  std::string out;
  for (const FeatureSpec& s : specs) {
    if (!out.empty()) out += ", ";
    out += s.name;
    if (!s.params.empty()) {
      out += '(';
      bool first = true;
      for (const auto& [k, v] : s.params) {
        if (!first) out += ", ";
        first = false;
        out += k + "=" + v;
      }
      out += ')';
    }
    if (!s.alias.empty()) out += " as " + s.alias;
  }
  return out;
}

namespace internal {

FeatureEngine::FeatureEngine(const std::vector<FeatureSpec>& specs_in) {
  const std::vector<FeatureSpec> specs = specs_in.empty() ? DefaultFeatureSpecs() : specs_in;
  int slots = 0;
  for (size_t i = 0; i < specs.size() && i < static_cast<size_t>(kMaxFeatures); ++i) {
    absl::StatusOr<Compiled> c = CompileOne(specs[i], static_cast<int>(i));
    CompiledFeature f;
    std::string name = specs[i].alias.empty() ? specs[i].name : specs[i].alias;
    if (c.ok()) {
      f = c->feature;
      name = c->name;
    }
    if (f.kind == FeatureKind::kTradeFlow || f.kind == FeatureKind::kArrivalRate) f.slot = slots++;
    need_micro_ |= f.kind == FeatureKind::kMicroRet;
    has_flow_ |= f.kind == FeatureKind::kTradeFlow;
    has_arrival_ |= f.kind == FeatureKind::kArrivalRate;
    features_.push_back(f);
    names_.push_back(name);
  }
}

void FeatureEngine::Reset(EngineState& s) const noexcept {
  for (double& v : s.log_mid) v = 0.0;
  for (double& v : s.log_micro) v = 0.0;
  s.updates = 0;
  s.last_trade_ns = -1;
  for (double& v : s.slot_a) v = 0.0;
  for (double& v : s.slot_b) v = 0.0;
}

void FeatureEngine::OnTrade(EngineState& s, uint32_t shares, bool aggressor_buy,
                            int64_t ts) const noexcept {
  s.last_trade_ns = ts;
  if (!has_flow_) return;
  const double v = shares;
  for (const CompiledFeature& f : features_) {
    if (f.kind != FeatureKind::kTradeFlow) continue;
    // Same arithmetic as FeatureState::OnTrade, so the default set is bit-identical.
    s.slot_a[f.slot] += f.x * ((aggressor_buy ? v : -v) - s.slot_a[f.slot]);
    s.slot_b[f.slot] += f.x * (v - s.slot_b[f.slot]);
  }
}

void FeatureEngine::OnAdd(EngineState& s, int64_t ts) const noexcept {
  if (!has_arrival_) return;
  for (const CompiledFeature& f : features_) {
    if (f.kind != FeatureKind::kArrivalRate) continue;
    const double dt =
        static_cast<double>(std::max<int64_t>(ts - static_cast<int64_t>(s.slot_b[f.slot]), 0));
    // Each arrival adds ln2 / half-life (per second): a steady Poisson rate r settles at r.
    s.slot_a[f.slot] = s.slot_a[f.slot] * std::exp2(-dt / f.x) + 0.6931471805599453 / (f.x * 1e-9);
    s.slot_b[f.slot] = static_cast<double>(ts);
  }
}

bool FeatureEngine::Compute(EngineState& s, const BookSide& bids, const BookSide& asks, int64_t ts,
                            float* out, double* mid_out) const noexcept {
  const double bid = bids.price(0) / itch::kPriceScale;
  const double ask = asks.price(0) / itch::kPriceScale;
  const double bid_sz1 = static_cast<double>(bids.shares(0));
  const double ask_sz1 = static_cast<double>(asks.shares(0));
  const double mid = 0.5 * (bid + ask);
  *mid_out = mid;
  const double microprice = (bid * ask_sz1 + ask * bid_sz1) / (bid_sz1 + ask_sz1);

  constexpr uint32_t kMask = EngineState::kHistory - 1;
  const double log_mid = std::log(mid);
  const uint64_t n = s.updates;  // Mids before this one.
  s.log_mid[n & kMask] = log_mid;
  const double log_micro = need_micro_ ? std::log(microprice) : 0.0;
  if (need_micro_) s.log_micro[n & kMask] = log_micro;
  s.updates = n + 1;

  bool non_finite = false;
  for (size_t i = 0; i < features_.size(); ++i) {
    const CompiledFeature& f = features_[i];
    double v = 0.0;
    switch (f.kind) {
      case FeatureKind::kInvalid:
        break;
      case FeatureKind::kRet: {
        const uint64_t k = static_cast<uint64_t>(f.n);
        v = n >= k ? (log_mid - s.log_mid[(n - k) & kMask]) * 1e4 : 0.0;
        break;
      }
      case FeatureKind::kMicroRet: {
        const uint64_t k = static_cast<uint64_t>(f.n);
        v = n >= k ? (log_micro - s.log_micro[(n - k) & kMask]) * 1e4 : 0.0;
        break;
      }
      case FeatureKind::kSpreadBps:
        v = (ask - bid) / mid * 1e4;
        break;
      case FeatureKind::kImbalance:
      case FeatureKind::kLogDepth: {
        double b = 0.0, a = 0.0;
        const int bl = std::min(bids.depth(), f.n);
        const int al = std::min(asks.depth(), f.n);
        for (int l = 0; l < bl; ++l) b += static_cast<double>(bids.shares(l));
        for (int l = 0; l < al; ++l) a += static_cast<double>(asks.shares(l));
        v = f.kind == FeatureKind::kImbalance ? (b - a) / (b + a) : std::log(1.0 + b + a);
        break;
      }
      case FeatureKind::kBookPressure: {
        double b = 0.0, a = 0.0, w = 1.0;
        const int levels = std::max(std::min(bids.depth(), f.n), std::min(asks.depth(), f.n));
        for (int l = 0; l < levels; ++l, w *= f.x) {
          if (l < bids.depth()) b += w * static_cast<double>(bids.shares(l));
          if (l < asks.depth()) a += w * static_cast<double>(asks.shares(l));
        }
        v = (b - a) / (b + a);
        break;
      }
      case FeatureKind::kTradeFlow:
        v = s.slot_b[f.slot] > 0.0 ? s.slot_a[f.slot] / s.slot_b[f.slot] : 0.0;
        break;
      case FeatureKind::kMicropriceDevBps:
        v = (microprice - mid) / mid * 1e4;
        break;
      case FeatureKind::kRealizedVol: {
        const uint64_t k = static_cast<uint64_t>(f.n);
        if (n >= k) {
          double sum = 0.0;
          for (uint64_t j = n - k; j < n; ++j) {
            const double r = s.log_mid[(j + 1) & kMask] - s.log_mid[j & kMask];
            sum += r * r;
          }
          v = std::sqrt(sum) * 1e4;
        }
        break;
      }
      case FeatureKind::kTimeSinceTradeMs:
        v = s.last_trade_ns < 0 ? f.x
                                : std::min(static_cast<double>(ts - s.last_trade_ns) * 1e-6, f.x);
        break;
      case FeatureKind::kArrivalRate: {
        const double dt =
            static_cast<double>(std::max<int64_t>(ts - static_cast<int64_t>(s.slot_b[f.slot]), 0));
        v = s.slot_a[f.slot] * std::exp2(-dt / f.x);
        break;
      }
    }
    const bool ok = std::isfinite(v);
    non_finite |= !ok;
    out[i] = ok ? static_cast<float>(v) : 0.0f;
  }
  return non_finite;
}

bool ComputeFeatures(const BookSide& bids, const BookSide& asks, FeatureState& state, float* out,
                     double* mid_out) noexcept {
  const double bid = bids.price(0) / itch::kPriceScale;
  const double ask = asks.price(0) / itch::kPriceScale;
  const double bid_sz1 = static_cast<double>(bids.shares(0));
  const double ask_sz1 = static_cast<double>(asks.shares(0));
  const double mid = 0.5 * (bid + ask);
  *mid_out = mid;

  // Returns are differences of log mids kept in a ring: one log per update, not three.
  constexpr uint32_t kMask = FeatureState::kHistory - 1;
  const double log_mid = std::log(mid);
  const uint64_t n = state.updates;  // Mids before this one.
  state.log_mid[n & kMask] = log_mid;
  state.updates = n + 1;
  auto ret = [&](uint64_t k) {
    return n >= k ? (log_mid - state.log_mid[(n - k) & kMask]) * 1e4 : 0.0;
  };

  double bid_sz5 = 0.0;
  double ask_sz5 = 0.0;
  const int bid_levels = bids.depth() < kImbalanceLevels ? bids.depth() : kImbalanceLevels;
  const int ask_levels = asks.depth() < kImbalanceLevels ? asks.depth() : kImbalanceLevels;
  for (int i = 0; i < bid_levels; ++i) bid_sz5 += static_cast<double>(bids.shares(i));
  for (int i = 0; i < ask_levels; ++i) ask_sz5 += static_cast<double>(asks.shares(i));

  const double microprice = (bid * ask_sz1 + ask * bid_sz1) / (bid_sz1 + ask_sz1);

  double v[kNumDefaultFeatures];
  v[kRet1] = ret(1);
  v[kRet10] = ret(10);
  v[kRet50] = ret(50);
  v[kSpreadBps] = (ask - bid) / mid * 1e4;
  v[kImbalanceL1] = (bid_sz1 - ask_sz1) / (bid_sz1 + ask_sz1);
  v[kImbalanceL5] = (bid_sz5 - ask_sz5) / (bid_sz5 + ask_sz5);
  // No trade yet: no flow, rather than 0/0.
  v[kTradeFlow] = state.flow_total > 0.0 ? state.flow_signed / state.flow_total : 0.0;
  v[kMicropriceDevBps] = (microprice - mid) / mid * 1e4;

  bool non_finite = false;
  for (int i = 0; i < kNumDefaultFeatures; ++i) {
    const bool ok = std::isfinite(v[i]);
    non_finite |= !ok;
    out[i] = ok ? static_cast<float>(v[i]) : 0.0f;
  }
  return non_finite;
}

}  // namespace internal
}  // namespace qsig::feeds
