#include "qsig/config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"

namespace qsig::config {
namespace {

// Walks one YAML map, remembering which keys were read so that the rest can be reported as
// unknown. The first error wins; later reads become no-ops.
class MapReader {
 public:
  MapReader(const YAML::Node& node, std::string path, absl::Status* status)
      : node_(node), path_(std::move(path)), status_(status) {
    if (node_ && !node_.IsNull() && !node_.IsMap()) {
      Fail(path_, "expected a mapping");
    }
  }

  template <typename T>
  void Get(const std::string& key, T* out) {
    seen_.insert(key);
    if (!status_->ok() || !node_ || !node_.IsMap()) return;
    const YAML::Node child = node_[key];
    if (!child) return;
    Read(child, Sub(key), out);
  }

  // A nested map: returns a reader for it (empty when absent).
  MapReader Child(const std::string& key) {
    seen_.insert(key);
    YAML::Node child;
    if (node_ && node_.IsMap()) child = node_[key];
    return MapReader(child, Sub(key), status_);
  }

  YAML::Node Raw(const std::string& key) {
    seen_.insert(key);
    if (node_ && node_.IsMap()) return node_[key];
    return YAML::Node();
  }

  void Finish() {
    if (!status_->ok() || !node_ || !node_.IsMap()) return;
    for (const auto& kv : node_) {
      const std::string key = kv.first.as<std::string>();
      if (!seen_.count(key)) {
        std::string known;
        for (const auto& k : seen_) absl::StrAppend(&known, known.empty() ? "" : ", ", k);
        Fail(Sub(key), absl::StrCat("unknown key (known keys here: ", known, ")"));
        return;
      }
    }
  }

  void Fail(const std::string& path, const std::string& what) {
    if (status_->ok()) *status_ = absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  }

  const std::string& path() const { return path_; }
  std::string Sub(const std::string& key) const {
    return path_.empty() ? key : absl::StrCat(path_, ".", key);
  }

 private:
  void Read(const YAML::Node& n, const std::string& path, std::string* out) {
    if (!n.IsScalar()) return Fail(path, "expected a string");
    *out = n.Scalar();
  }
  void Read(const YAML::Node& n, const std::string& path, bool* out) {
    if (!n.IsScalar()) return Fail(path, "expected true or false");
    const std::string& s = n.Scalar();
    if (s == "true" || s == "yes" || s == "on") {
      *out = true;
    } else if (s == "false" || s == "no" || s == "off") {
      *out = false;
    } else {
      Fail(path, absl::StrCat("expected true or false, got '", s, "'"));
    }
  }
  void Read(const YAML::Node& n, const std::string& path, int* out) {
    int64_t v = 0;
    if (!n.IsScalar() || !absl::SimpleAtoi(n.Scalar(), &v) || v < INT32_MIN || v > INT32_MAX) {
      return Fail(path, absl::StrCat("expected an integer, got '", Describe(n), "'"));
    }
    *out = static_cast<int>(v);
  }
  void Read(const YAML::Node& n, const std::string& path, uint64_t* out) {
    if (!n.IsScalar() || !absl::SimpleAtoi(n.Scalar(), out)) {
      return Fail(path, absl::StrCat("expected a non-negative integer, got '", Describe(n), "'"));
    }
  }
  void Read(const YAML::Node& n, const std::string& path, double* out) {
    if (!n.IsScalar() || !absl::SimpleAtod(n.Scalar(), out) || !std::isfinite(*out)) {
      return Fail(path, absl::StrCat("expected a number, got '", Describe(n), "'"));
    }
  }
  template <typename T>
  void Read(const YAML::Node& n, const std::string& path, std::vector<T>* out) {
    if (n.IsNull()) {
      out->clear();
      return;
    }
    if (!n.IsSequence()) return Fail(path, "expected a list");
    out->clear();
    for (size_t i = 0; i < n.size(); ++i) {
      T v{};
      Read(n[i], absl::StrCat(path, "[", i, "]"), &v);
      if (!status_->ok()) return;
      out->push_back(v);
    }
  }
  static std::string Describe(const YAML::Node& n) {
    if (n.IsScalar()) return n.Scalar();
    if (n.IsSequence()) return "<list>";
    if (n.IsMap()) return "<mapping>";
    return "<null>";
  }

  YAML::Node node_;
  std::string path_;
  absl::Status* status_;
  std::set<std::string> seen_;
};

// yaml-cpp keeps both entries of a repeated key and `node[key]` reads the first: a silent
// override waiting to happen. Every mapping in the tree is checked for a key set twice.
absl::Status CheckDuplicateKeys(const YAML::Node& node, const std::string& path,
                                const std::string& origin) {
  if (node.IsMap()) {
    std::map<std::string, int> lines;
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) continue;
      const std::string& key = kv.first.Scalar();
      const std::string sub = path.empty() ? key : absl::StrCat(path, ".", key);
      const int line = kv.first.Mark().line + 1;
      const auto [it, inserted] = lines.emplace(key, line);
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrCat(origin, ":", line, ": ", sub,
                                                       ": duplicate key (first set at line ",
                                                       it->second, "); keep one"));
      }
      if (auto s = CheckDuplicateKeys(kv.second, sub, origin); !s.ok()) return s;
    }
  } else if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) {
      const std::string sub = absl::StrCat(path, "[", i, "]");
      if (auto s = CheckDuplicateKeys(node[i], sub, origin); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

// Applies `a.b.c=value` to the tree; `value` is parsed as YAML so lists work (`[0, 1]`).
absl::Status ApplyOverride(YAML::Node& root, const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError(absl::StrCat("--set '", text, "': expected key.path=value"));
  }
  const std::string key = text.substr(0, eq);
  YAML::Node value;
  try {
    value = YAML::Load(text.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("--set ", key, ": ", e.what()));
  }
  std::vector<std::string> parts = absl::StrSplit(key, '.');
  // yaml-cpp nodes are handles: walking with operator[] on copies edits the shared tree.
  std::vector<YAML::Node> chain{root};
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node cur = chain.back();
    size_t index = 0;
    if (cur.IsSequence() && absl::SimpleAtoi(parts[i], &index)) {
      if (index >= cur.size()) {
        return absl::InvalidArgumentError(absl::StrCat("--set ", key, ": index ", index,
                                                       " out of range (", cur.size(), " entries)"));
      }
      chain.push_back(cur[index]);
    } else {
      if (!cur.IsMap() && !cur.IsNull()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--set ", key, ": '", parts[i], "' is not a mapping"));
      }
      chain.push_back(cur[parts[i]]);
    }
  }
  YAML::Node parent = chain.back();
  size_t index = 0;
  if (parent.IsSequence() && absl::SimpleAtoi(parts.back(), &index)) {
    if (index >= parent.size()) {
      return absl::InvalidArgumentError(absl::StrCat("--set ", key, ": index out of range"));
    }
    parent[index] = value;
  } else {
    parent[parts.back()] = value;
  }
  return absl::OkStatus();
}

absl::Status CheckHostPort(const std::string& key, const std::string& value, bool allow_empty) {
  if (allow_empty && value.empty()) return absl::OkStatus();
  auto hp = ParseHostPort(value);
  if (!hp.ok()) return absl::InvalidArgumentError(absl::StrCat(key, ": ", hp.status().message()));
  return absl::OkStatus();
}

// "HH:MM" (exactly five characters) as minutes of the day, or -1.
int ParseClock(std::string_view s) {
  int hh = -1, mm = -1;
  if (s.size() != 5 || s[2] != ':') return -1;
  const std::string str(s);
  if (std::sscanf(str.c_str(), "%d:%d", &hh, &mm) != 2 || hh < 0 || hh > 23 || mm < 0 || mm > 59) {
    return -1;
  }
  return hh * 60 + mm;
}

// calibration.schedule / schedule_tz / session / missed_grace_s (the holiday file is read after
// paths are resolved).
absl::Status CheckSchedule(CalibrationConfig* cal) {
  const auto bad = [](const std::string& key, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": ", what));
  };
  if (!(cal->missed_grace_s >= 0) || cal->missed_grace_s > 30 * 86400.0) {
    return bad("calibration.missed_grace_s", "must be in [0, 2592000]");
  }
  std::string zone = cal->schedule_tz;
  if (!cal->schedule.empty()) {
    const std::string& s = cal->schedule;
    if (ParseClock(std::string_view(s).substr(0, 5)) < 0 || (s.size() > 5 && s[5] != ' ')) {
      return bad("calibration.schedule",
                 absl::StrCat("expected HH:MM or \"HH:MM Area/City\", got '", s, "'"));
    }
    if (s.size() > 5) {
      const std::string inline_zone(absl::StripAsciiWhitespace(s.substr(6)));
      if (!zone.empty() && zone != inline_zone) {
        return bad("calibration.schedule", absl::StrCat("names zone ", inline_zone,
                                                        " but calibration.schedule_tz is ", zone));
      }
      zone = inline_zone;
    }
  }
  if (!zone.empty()) {
    absl::TimeZone tz;
    if (zone.size() > 64 || zone.find("..") != std::string::npos ||
        !absl::LoadTimeZone(zone, &tz)) {
      return bad(cal->schedule_tz.empty() ? "calibration.schedule" : "calibration.schedule_tz",
                 absl::StrCat("unknown IANA time zone '", zone, "'"));
    }
  }
  if (!cal->session.empty()) {
    const std::string& s = cal->session;
    const int open = ParseClock(std::string_view(s).substr(0, 5));
    const int close =
        s.size() == 11 && s[5] == '-' ? ParseClock(std::string_view(s).substr(6)) : -1;
    if (open < 0 || close < 0 || close <= open) {
      return bad("calibration.session",
                 absl::StrCat("expected \"HH:MM-HH:MM\" (open before close), got '", s, "'"));
    }
    const int at = cal->schedule.empty() ? -1 : ParseClock(cal->schedule.substr(0, 5));
    if (at >= open && at < close) {
      return bad("calibration.schedule",
                 absl::StrCat(cal->schedule.substr(0, 5), " is inside calibration.session ", s,
                              ": it would never run"));
    }
  }
  return absl::OkStatus();
}

// Reads calibration.holidays_file into cal->holidays: one YYYY-MM-DD per line, blank lines and
// '#' comments ignored; at most 1 MiB.
absl::Status ReadHolidays(CalibrationConfig* cal) {
  cal->holidays.clear();
  if (cal->holidays_file.empty()) return absl::OkStatus();
  const auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration.holidays_file: ", cal->holidays_file, ": ", what));
  };
  constexpr std::uintmax_t kMaxBytes = 1 << 20;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(cal->holidays_file, ec)) {
    return bad("not a readable regular file");
  }
  if (std::filesystem::file_size(cal->holidays_file, ec) > kMaxBytes || ec) {
    return bad("over 1 MiB");
  }
  std::ifstream in(cal->holidays_file);
  if (!in) return bad("cannot be opened");
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    absl::string_view v = line;
    if (const size_t hash = v.find('#'); hash != absl::string_view::npos) v = v.substr(0, hash);
    v = absl::StripAsciiWhitespace(v);
    if (v.empty()) continue;
    absl::CivilDay day;
    if (v.size() != 10 || !absl::ParseCivilTime(v, &day)) {
      return bad(absl::StrCat("line ", number, ": expected YYYY-MM-DD, got '", v, "'"));
    }
    cal->holidays.emplace_back(v);
  }
  if (in.bad()) return bad("read error");
  return absl::OkStatus();
}

// Reads feed.shard.map_file (if any) into `sh` and checks the shard keys together.
absl::Status ResolveShards(ShardConfig* sh) {
  const auto bad = [](const std::string& key, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": ", what));
  };
  if (!sh->map_file.empty()) {
    if (!sh->addresses.empty() || !sh->symbols.empty() || sh->count != 1) {
      return bad("feed.shard.map_file",
                 "replaces feed.shard.count, addresses and symbols: set only index with it");
    }
    constexpr std::uintmax_t kMaxMapBytes = 4 << 20;
    std::error_code ec;
    if (!std::filesystem::is_regular_file(sh->map_file, ec)) {
      return bad("feed.shard.map_file", absl::StrCat("'", sh->map_file, "' is not a regular file"));
    }
    if (std::filesystem::file_size(sh->map_file, ec) > kMaxMapBytes || ec) {
      return bad("feed.shard.map_file", absl::StrCat("'", sh->map_file, "' is over 4 MiB"));
    }
    YAML::Node doc;
    try {
      doc = YAML::LoadFile(sh->map_file);
    } catch (const YAML::Exception& e) {
      return bad("feed.shard.map_file",
                 absl::StrCat(sh->map_file, ":", e.mark.line + 1, ": ", "not valid YAML"));
    }
    const YAML::Node shards = doc.IsMap() ? doc["shards"] : YAML::Node();
    if (!shards || !shards.IsSequence() || shards.size() == 0) {
      return bad("feed.shard.map_file", absl::StrCat(sh->map_file,
                                                     ": expected `shards:`, a "
                                                     "non-empty list of {address, symbols}"));
    }
    bool any_symbols = false;
    for (size_t i = 0; i < shards.size(); ++i) {
      const YAML::Node e = shards[i];
      const std::string where = absl::StrCat(sh->map_file, ": shards[", i, "]");
      if (!e.IsMap() || !e["address"] || !e["address"].IsScalar()) {
        return bad("feed.shard.map_file", absl::StrCat(where, ": needs an address"));
      }
      for (const auto& kv : e) {
        const std::string k = kv.first.as<std::string>();
        if (k != "address" && k != "symbols") {
          return bad("feed.shard.map_file", absl::StrCat(where, ".", k, ": unknown key"));
        }
      }
      sh->addresses.push_back(e["address"].as<std::string>());
      std::vector<std::string> syms;
      if (e["symbols"]) {
        if (!e["symbols"].IsSequence()) {
          return bad("feed.shard.map_file", absl::StrCat(where, ".symbols: expected a list"));
        }
        for (const auto& x : e["symbols"]) syms.push_back(x.as<std::string>());
        any_symbols = true;
      }
      sh->shard_symbols.push_back(std::move(syms));
    }
    sh->count = static_cast<int>(shards.size());
    if (!any_symbols) sh->shard_symbols.clear();
  }
  if (sh->count < 1 || sh->count > 4096) return bad("feed.shard.count", "must be in 1..4096");
  if (sh->index < 0 || sh->index >= sh->count) {
    return bad("feed.shard.index", absl::StrCat("must be in 0..", sh->count - 1));
  }
  if (!sh->addresses.empty() && static_cast<int>(sh->addresses.size()) != sh->count) {
    return bad("feed.shard.addresses",
               absl::StrCat(sh->addresses.size(), " addresses for ", sh->count, " shards"));
  }
  for (const std::string& a : sh->addresses) {
    if (auto hp = ParseHostPort(a); !hp.ok()) {
      return bad("feed.shard.addresses", std::string(hp.status().message()));
    }
  }
  if (!sh->shard_symbols.empty()) {
    std::set<std::string> seen;
    for (const auto& list : sh->shard_symbols) {
      for (const std::string& sym : list) {
        if (!seen.insert(sym).second) {
          return bad("feed.shard.map_file", absl::StrCat("symbol ", sym, " is in two shards"));
        }
      }
    }
    sh->symbols = sh->shard_symbols[static_cast<size_t>(sh->index)];
    if (sh->symbols.empty()) {
      return bad("feed.shard.map_file",
                 absl::StrCat("shard ", sh->index, " lists no symbols while others do"));
    }
  }
  // Every listed symbol, this shard's or (from a map) another's, once.
  const char* key = sh->map_file.empty() ? "feed.shard.symbols" : "feed.shard.map_file";
  for (const auto& list : sh->shard_symbols.empty()
                              ? std::vector<std::vector<std::string>>{sh->symbols}
                              : sh->shard_symbols) {
    for (const std::string& sym : list) {
      if (sym.empty() || sym.size() > 8) {
        return bad(key, absl::StrCat("symbol '", sym, "' is not 1..8 characters"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Config> Build(const YAML::Node& root, const std::string& origin) {
  Config c;
  c.path = origin;
  absl::Status st;
  MapReader top(root, "", &st);

  MapReader feed = top.Child("feed");
  feed.Get("source", &c.feed.source);
  feed.Get("listen", &c.feed.listen);
  feed.Get("group", &c.feed.group);
  feed.Get("interface", &c.feed.interface_address);
  feed.Get("receive_buffer_bytes", &c.feed.receive_buffer_bytes);
  feed.Get("busy_poll", &c.feed.busy_poll);
  feed.Get("kernel_timestamps", &c.feed.kernel_timestamps);
  feed.Get("max_instruments", &c.feed.max_instruments);
  feed.Get("max_orders", &c.feed.max_orders);
  feed.Get("core", &c.feed.core);
  feed.Get("retransmit", &c.feed.retransmit);
  feed.Get("features", &c.feed.features);
  {
    MapReader b = feed.Child("line_b");
    b.Get("listen", &c.feed.line_b.listen);
    b.Get("group", &c.feed.line_b.group);
    b.Get("interface", &c.feed.line_b.interface_address);
    b.Finish();
    MapReader r = feed.Child("recovery");
    r.Get("max_held_messages", &c.feed.recovery.max_held_messages);
    r.Get("rerequest_delay_us", &c.feed.recovery.rerequest_delay_us);
    r.Get("rerequest_interval_us", &c.feed.recovery.rerequest_interval_us);
    r.Get("max_rerequests", &c.feed.recovery.max_rerequests);
    r.Get("gap_timeout_us", &c.feed.recovery.gap_timeout_us);
    r.Finish();
    MapReader rp = feed.Child("replay");
    rp.Get("path", &c.feed.replay.path);
    rp.Get("speed", &c.feed.replay.speed);
    rp.Finish();
    MapReader co = feed.Child("corroboration");
    co.Get("confirm_packets", &c.feed.corroboration.confirm_packets);
    co.Get("window_us", &c.feed.corroboration.window_us);
    co.Finish();
    MapReader sh = feed.Child("shard");
    sh.Get("index", &c.feed.shard.index);
    sh.Get("count", &c.feed.shard.count);
    sh.Get("symbols", &c.feed.shard.symbols);
    sh.Get("addresses", &c.feed.shard.addresses);
    sh.Get("map_file", &c.feed.shard.map_file);
    sh.Finish();
  }
  feed.Get("max_sequence_jump", &c.feed.max_sequence_jump);
  feed.Get("max_price", &c.feed.max_price);
  feed.Finish();

  MapReader sim = top.Child("sim");
  sim.Get("instruments", &c.sim.instruments);
  sim.Get("rate", &c.sim.rate);
  sim.Get("seed", &c.sim.seed);
  sim.Get("messages_per_packet", &c.sim.messages_per_packet);
  sim.Get("destination", &c.sim.destination);
  sim.Get("max_messages", &c.sim.max_messages);
  sim.Get("destination_b", &c.sim.destination_b);
  sim.Get("line_b", &c.sim.line_b);
  sim.Get("retransmit", &c.sim.retransmit);
  sim.Get("retransmit_listen", &c.sim.retransmit_listen);
  sim.Get("session_restart_rate", &c.sim.session_restart_rate);
  sim.Get("record_pcap", &c.sim.record_pcap);
  sim.Get("record_itch", &c.sim.record_itch);
  sim.Get("volatility", &c.sim.volatility);
  sim.Get("spread", &c.sim.spread);
  sim.Get("order_size", &c.sim.order_size);
  sim.Get("trade_intensity", &c.sim.trade_intensity);
  if (const YAML::Node regimes = sim.Raw("regimes"); regimes && !regimes.IsNull()) {
    if (!regimes.IsSequence()) {
      sim.Fail("sim.regimes", "expected a list of {at_s, volatility, spread, ...}");
    } else if (regimes.size() > 1000) {
      sim.Fail("sim.regimes", "at most 1000 entries");
    } else {
      for (size_t i = 0; i < regimes.size() && st.ok(); ++i) {
        MapReader r(regimes[i], absl::StrCat("sim.regimes[", i, "]"), &st);
        SimConfig::Regime g;
        r.Get("at_s", &g.at_s);
        r.Get("volatility", &g.volatility);
        r.Get("spread", &g.spread);
        r.Get("order_size", &g.order_size);
        r.Get("trade_intensity", &g.trade_intensity);
        r.Finish();
        if (st.ok() && !regimes[i]["at_s"]) r.Fail(r.Sub("at_s"), "required");
        if (st.ok() && !(g.at_s >= 0)) r.Fail(r.Sub("at_s"), "must be >= 0");
        for (auto [name, v] : {std::pair{"volatility", g.volatility},
                               {"spread", g.spread},
                               {"order_size", g.order_size},
                               {"trade_intensity", g.trade_intensity}}) {
          if (st.ok() && (!(v > 0) || v > 100)) r.Fail(r.Sub(name), "a factor in (0, 100]");
        }
        c.sim.regimes.push_back(g);
      }
    }
  }
  for (auto [name, v] : {std::pair{"volatility", c.sim.volatility},
                         {"spread", c.sim.spread},
                         {"order_size", c.sim.order_size},
                         {"trade_intensity", c.sim.trade_intensity}}) {
    if (st.ok() && (!(v > 0) || v > 100)) sim.Fail(sim.Sub(name), "a factor in (0, 100]");
  }
  for (auto [key, faults] :
       {std::pair{"faults_a", &c.sim.faults_a}, {"faults_b", &c.sim.faults_b}}) {
    MapReader f = sim.Child(key);
    f.Get("drop", &faults->drop);
    f.Get("reorder", &faults->reorder);
    f.Get("duplicate", &faults->duplicate);
    f.Get("malformed", &faults->malformed);
    f.Finish();
    for (auto [name, v] : {std::pair{"drop", faults->drop},
                           {"reorder", faults->reorder},
                           {"duplicate", faults->duplicate},
                           {"malformed", faults->malformed}}) {
      if (st.ok() && (v < 0 || v > 1)) f.Fail(f.Sub(name), "a probability in [0, 1]");
    }
  }
  sim.Finish();

  const YAML::Node models = top.Raw("models");
  if (st.ok() && models && !models.IsNull()) {
    if (!models.IsSequence()) {
      top.Fail("models", "expected a list of {name, path}");
    } else {
      for (size_t i = 0; i < models.size() && st.ok(); ++i) {
        ModelConfig m;
        MapReader mr(models[i], absl::StrCat("models[", i, "]"), &st);
        mr.Get("name", &m.name);
        mr.Get("path", &m.path);
        mr.Get("window", &m.window);
        mr.Get("mode", &m.mode);
        mr.Get("precompute", &m.precompute);
        mr.Finish();
        if (st.ok() && m.mode != "window" && m.mode != "streaming")
          mr.Fail(mr.Sub("mode"),
                  absl::StrCat("is \"", m.mode, "\"; expected window or streaming"));
        if (st.ok() && (m.window < 0 || m.window > 4096))
          mr.Fail(mr.Sub("window"), "must be in 0..4096");
        if (st.ok() && m.name.empty()) mr.Fail(mr.Sub("name"), "required");
        if (st.ok() && m.path.empty()) mr.Fail(mr.Sub("path"), "required");
        for (const auto& other : c.models) {
          if (st.ok() && other.name == m.name) {
            mr.Fail(mr.Sub("name"), absl::StrCat("duplicate model name '", m.name, "'"));
          }
        }
        c.models.push_back(m);
      }
    }
  }

  MapReader workers = top.Child("workers");
  workers.Get("count", &c.workers.count);
  workers.Get("cores", &c.workers.cores);
  workers.Get("queue_capacity", &c.workers.queue_capacity);
  workers.Get("idle_spin_us", &c.workers.idle_spin_us);
  workers.Finish();

  MapReader pipeline = top.Child("pipeline");
  pipeline.Get("mode", &c.pipeline.mode);
  pipeline.Get("shards", &c.pipeline.shards);
  pipeline.Get("cores", &c.pipeline.cores);
  pipeline.Get("busy_poll", &c.pipeline.busy_poll);
  pipeline.Get("idle_spin_us", &c.pipeline.idle_spin_us);
  pipeline.Finish();

  MapReader shadow = top.Child("shadow");
  shadow.Get("sample_every", &c.shadow.sample_every);
  shadow.Get("divergence_threshold", &c.shadow.divergence_threshold);
  shadow.Get("fallback_relative_rmse", &c.shadow.fallback_relative_rmse);
  shadow.Get("fallback_after_s", &c.shadow.fallback_after_s);
  shadow.Finish();

  MapReader cal = top.Child("calibration");
  cal.Get("warmup_samples", &c.calibration.warmup_samples);
  cal.Get("samples", &c.calibration.samples);
  cal.Get("max_relative_rmse", &c.calibration.max_relative_rmse);
  cal.Get("method", &c.calibration.method);
  cal.Get("percentile", &c.calibration.percentile);
  cal.Get("layer_guard_rmse", &c.calibration.layer_guard_rmse);
  cal.Get("reduce_range", &c.calibration.reduce_range);
  cal.Get("schedule", &c.calibration.schedule);
  cal.Get("schedule_tz", &c.calibration.schedule_tz);
  cal.Get("holidays_file", &c.calibration.holidays_file);
  cal.Get("session", &c.calibration.session);
  cal.Get("missed_grace_s", &c.calibration.missed_grace_s);
  cal.Get("min_samples", &c.calibration.min_samples);
  cal.Get("cooldown_s", &c.calibration.cooldown_s);
  cal.Get("max_worsening", &c.calibration.max_worsening);
  cal.Get("worsening_floor", &c.calibration.worsening_floor);
  cal.Finish();

  MapReader drift = top.Child("drift");
  drift.Get("input_z", &c.drift.input_z);
  drift.Get("saturation_ratio", &c.drift.saturation_ratio);
  drift.Get("shadow_relative_rmse", &c.drift.shadow_relative_rmse);
  drift.Get("window", &c.drift.window);
  drift.Get("interval_s", &c.drift.interval_s);
  drift.Get("span_s", &c.drift.span_s);
  drift.Get("alarm_quantile", &c.drift.alarm_quantile);
  drift.Get("consecutive", &c.drift.consecutive);
  drift.Get("clear_quantile", &c.drift.clear_quantile);
  drift.Get("psi_floor", &c.drift.psi_floor);
  drift.Get("wasserstein_floor", &c.drift.wasserstein_floor);
  drift.Finish();

  MapReader state = top.Child("state");
  state.Get("dir", &c.state.dir);
  state.Get("history_per_model", &c.state.history_per_model);
  state.Get("samples_interval_s", &c.state.samples_interval_s);
  state.Finish();

  MapReader grpc = top.Child("grpc");
  grpc.Get("listen", &c.grpc.listen);
  grpc.Get("subscriber_queue", &c.grpc.subscriber_queue);
  grpc.Get("max_streams", &c.grpc.max_streams);
  grpc.Get("max_instruments_per_subscription", &c.grpc.max_instruments_per_subscription);
  grpc.Get("publisher_spin_us", &c.grpc.publisher_spin_us);
  {
    MapReader tls = grpc.Child("tls");
    tls.Get("cert_file", &c.grpc.tls.cert_file);
    tls.Get("key_file", &c.grpc.tls.key_file);
    tls.Get("client_ca_file", &c.grpc.tls.client_ca_file);
    tls.Finish();
  }
  grpc.Get("client_token_file", &c.grpc.client_token_file);
  grpc.Get("max_message_bytes", &c.grpc.max_message_bytes);
  grpc.Get("max_concurrent_streams", &c.grpc.max_concurrent_streams);
  grpc.Finish();

  MapReader metrics = top.Child("metrics");
  metrics.Get("listen", &c.metrics.listen);
  metrics.Get("threads", &c.metrics.threads);
  metrics.Get("request_timeout_ms", &c.metrics.request_timeout_ms);
  metrics.Finish();

  MapReader admin = top.Child("admin");
  admin.Get("listen", &c.admin.listen);
  admin.Get("token_file", &c.admin.token_file);
  admin.Get("allowed_identities", &c.admin.allowed_identities);
  admin.Get("model_dir", &c.admin.model_dir);
  admin.Get("max_model_bytes", &c.admin.max_model_bytes);
  admin.Finish();

  MapReader runtime = top.Child("runtime");
  runtime.Get("lock_memory", &c.runtime.lock_memory);
  runtime.Get("realtime_priority", &c.runtime.realtime_priority);
  runtime.Finish();
  MapReader console = top.Child("console");
  console.Get("status_interval_s", &c.console.status_interval_s);
  console.Finish();

  top.Finish();
  if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat(origin, ": ", st.message()));

  // Value checks, each naming its key.
  auto bad = [&](const std::string& key, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": ", key, ": ", what));
  };
  if (c.feed.source != "sim" && c.feed.source != "udp" && c.feed.source != "pcap" &&
      c.feed.source != "itch") {
    return bad("feed.source",
               absl::StrCat("expected sim, udp, pcap or itch, got '", c.feed.source, "'"));
  }
  if ((c.feed.source == "pcap" || c.feed.source == "itch") && c.feed.replay.path.empty()) {
    return bad("feed.replay.path", absl::StrCat("required when feed.source is ", c.feed.source));
  }
  if (c.feed.replay.speed < 0) return bad("feed.replay.speed", "must be >= 0");
  if (c.sim.line_b && c.feed.line_b.listen.empty()) {
    return bad("sim.line_b", "needs feed.line_b.listen");
  }
  if (c.sim.session_restart_rate < 0 || c.sim.session_restart_rate > 1) {
    return bad("sim.session_restart_rate", "a probability in [0, 1]");
  }
  if (c.feed.recovery.max_held_messages < 0) {
    return bad("feed.recovery.max_held_messages", "must be >= 0");
  }
  if (c.feed.recovery.gap_timeout_us <= 0)
    return bad("feed.recovery.gap_timeout_us", "must be > 0");
  if (c.feed.corroboration.confirm_packets < 1 || c.feed.corroboration.confirm_packets > 64) {
    return bad("feed.corroboration.confirm_packets", "must be in 1..64");
  }
  if (c.feed.corroboration.window_us < 1 || c.feed.corroboration.window_us > 60'000'000) {
    return bad("feed.corroboration.window_us", "must be in 1..60000000");
  }
  if (c.feed.max_sequence_jump < 1 || c.feed.max_sequence_jump > (uint64_t{1} << 40)) {
    return bad("feed.max_sequence_jump", "must be in 1..1099511627776");
  }
  if (!(c.feed.max_price > 0) || c.feed.max_price > 429496.7295) {
    return bad("feed.max_price", "must be in (0, 429496.7295] dollars (ITCH Price(4))");
  }
  for (const auto& [key, value, allow_empty] :
       std::vector<std::tuple<std::string, std::string, bool>>{
           {"feed.listen", c.feed.listen, false},
           {"feed.line_b.listen", c.feed.line_b.listen, true},
           {"feed.retransmit", c.feed.retransmit, true},
           {"sim.destination_b", c.sim.destination_b, true},
           {"sim.retransmit_listen", c.sim.retransmit_listen, true},
           {"sim.destination", c.sim.destination, false},
           {"grpc.listen", c.grpc.listen, false},
           {"admin.listen", c.admin.listen, false},
           {"metrics.listen", c.metrics.listen, false}}) {
    if (auto s = CheckHostPort(key, value, allow_empty); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(origin, ": ", s.message()));
    }
  }
  if (c.feed.max_instruments < 1 || c.feed.max_instruments > 65535) {
    return bad("feed.max_instruments", "must be in 1..65535");
  }
  if (c.feed.max_orders < 1024) return bad("feed.max_orders", "must be at least 1024");
  if (c.feed.receive_buffer_bytes < 0) return bad("feed.receive_buffer_bytes", "must be >= 0");
  if (c.sim.instruments.empty()) return bad("sim.instruments", "must name at least one");
  if (c.sim.instruments.size() > static_cast<size_t>(c.feed.max_instruments)) {
    return bad("sim.instruments", "more instruments than feed.max_instruments");
  }
  for (size_t i = 0; i < c.sim.instruments.size(); ++i) {
    const auto& s = c.sim.instruments[i];
    if (s.empty() || s.size() > 8) {
      return bad(absl::StrCat("sim.instruments[", i, "]"), "symbols are 1..8 characters");
    }
  }
  if (!(c.sim.rate > 0) || c.sim.rate > 5e6) return bad("sim.rate", "must be in (0, 5000000]");
  if (c.sim.messages_per_packet < 1 || c.sim.messages_per_packet > 64) {
    return bad("sim.messages_per_packet", "must be in 1..64");
  }
  if (c.workers.count < 1 || c.workers.count > 64) return bad("workers.count", "must be in 1..64");
  if (!c.workers.cores.empty() && c.workers.cores.size() != static_cast<size_t>(c.workers.count)) {
    return bad("workers.cores", absl::StrCat("lists ", c.workers.cores.size(),
                                             " cores for workers.count = ", c.workers.count));
  }
  for (size_t i = 0; i < c.workers.cores.size(); ++i) {
    if (c.workers.cores[i] < 0) return bad(absl::StrCat("workers.cores[", i, "]"), "must be >= 0");
  }
  if (c.workers.queue_capacity < 16 || c.workers.queue_capacity > (1 << 24)) {
    return bad("workers.queue_capacity", "must be in 16..16777216");
  }
  if (c.workers.idle_spin_us < 0) return bad("workers.idle_spin_us", "must be >= 0");
  if (c.pipeline.mode != "workers" && c.pipeline.mode != "run_to_completion") {
    return bad("pipeline.mode",
               absl::StrCat("expected workers or run_to_completion, got '", c.pipeline.mode, "'"));
  }
  if (c.pipeline.shards < 1 || c.pipeline.shards > 64) {
    return bad("pipeline.shards", "must be in 1..64");
  }
  if (!c.pipeline.cores.empty() &&
      c.pipeline.cores.size() != static_cast<size_t>(c.pipeline.shards)) {
    return bad("pipeline.cores", absl::StrCat("lists ", c.pipeline.cores.size(),
                                              " cores for pipeline.shards = ", c.pipeline.shards));
  }
  for (size_t i = 0; i < c.pipeline.cores.size(); ++i) {
    if (c.pipeline.cores[i] < 0) {
      return bad(absl::StrCat("pipeline.cores[", i, "]"), "must be >= 0");
    }
  }
  if (c.pipeline.idle_spin_us < 0) return bad("pipeline.idle_spin_us", "must be >= 0");
  if (c.shadow.sample_every < 0) return bad("shadow.sample_every", "must be >= 0");
  if (!(c.shadow.divergence_threshold > 0))
    return bad("shadow.divergence_threshold", "must be > 0");
  if (!(c.shadow.fallback_relative_rmse >= 0))
    return bad("shadow.fallback_relative_rmse", "must be >= 0 (0 = never fall back)");
  if (!(c.shadow.fallback_after_s >= 0)) return bad("shadow.fallback_after_s", "must be >= 0");
  if (!(c.state.samples_interval_s >= 0) || !(c.state.samples_interval_s <= 86400)) {
    return bad("state.samples_interval_s", "must be in [0, 86400] seconds (0 = never)");
  }
  if (c.state.history_per_model < 1 || c.state.history_per_model > 1000)
    return bad("state.history_per_model", "must be in 1..1000");
  if (c.calibration.warmup_samples < 16) return bad("calibration.warmup_samples", "must be >= 16");
  if (c.calibration.samples < c.calibration.warmup_samples) {
    return bad("calibration.samples", "must be >= calibration.warmup_samples");
  }
  if (!(c.calibration.max_relative_rmse > 0)) {
    return bad("calibration.max_relative_rmse", "must be > 0");
  }
  {
    static const char* kMethods[] = {"minmax", "ema", "percentile", "entropy", "mse"};
    if (std::find(std::begin(kMethods), std::end(kMethods), c.calibration.method) ==
        std::end(kMethods)) {
      return bad("calibration.method",
                 absl::StrCat("expected minmax, ema, percentile, entropy or mse, got '",
                              c.calibration.method, "'"));
    }
  }
  if (!(c.calibration.percentile > 50) || c.calibration.percentile > 100) {
    return bad("calibration.percentile", "must be in (50, 100]");
  }
  if (c.calibration.layer_guard_rmse < 0)
    return bad("calibration.layer_guard_rmse", "must be >= 0");
  if (c.calibration.reduce_range != "auto" && c.calibration.reduce_range != "on" &&
      c.calibration.reduce_range != "off") {
    return bad("calibration.reduce_range",
               absl::StrCat("expected auto, on or off, got '", c.calibration.reduce_range, "'"));
  }
  if (auto s = CheckSchedule(&c.calibration); !s.ok()) return s;
  if (!(c.drift.input_z > 0)) return bad("drift.input_z", "must be > 0");
  if (!(c.drift.saturation_ratio > 0) || c.drift.saturation_ratio > 1) {
    return bad("drift.saturation_ratio", "must be in (0, 1]");
  }
  if (!(c.drift.shadow_relative_rmse > 0)) return bad("drift.shadow_relative_rmse", "must be > 0");
  if (c.drift.window < 16) return bad("drift.window", "must be >= 16");
  if (!(c.drift.interval_s > 0)) return bad("drift.interval_s", "must be > 0");
  if (!(c.drift.alarm_quantile > 0.5) || !(c.drift.alarm_quantile < 1)) {
    return bad("drift.alarm_quantile", "must be in (0.5, 1)");
  }
  if (!(c.drift.clear_quantile > 0) || !(c.drift.clear_quantile <= c.drift.alarm_quantile)) {
    return bad("drift.clear_quantile", "must be in (0, drift.alarm_quantile]");
  }
  if (!(c.drift.span_s >= c.drift.interval_s) || !(c.drift.span_s <= 86400)) {
    return bad("drift.span_s", "must be in [drift.interval_s, 86400] seconds");
  }
  if (!(c.drift.psi_floor >= 0) || !(c.drift.psi_floor <= 10)) {
    return bad("drift.psi_floor", "must be in [0, 10]");
  }
  if (!(c.drift.wasserstein_floor >= 0) || !(c.drift.wasserstein_floor <= 10)) {
    return bad("drift.wasserstein_floor", "must be in [0, 10] reference standard deviations");
  }
  if (c.drift.consecutive < 1 || c.drift.consecutive > 1000) {
    return bad("drift.consecutive", "must be in [1, 1000]");
  }
  if (c.grpc.subscriber_queue < 16 || c.grpc.subscriber_queue > (1 << 24)) {
    return bad("grpc.subscriber_queue", "must be in 16..16777216");
  }
  if (c.grpc.max_streams < 1 || c.grpc.max_streams > 1'000'000) {
    return bad("grpc.max_streams", "must be in 1..1000000");
  }
  if (c.grpc.max_instruments_per_subscription < 1 ||
      c.grpc.max_instruments_per_subscription > 65536) {
    return bad("grpc.max_instruments_per_subscription", "must be in 1..65536");
  }
  if (c.grpc.publisher_spin_us < 0 || c.grpc.publisher_spin_us > 1'000'000) {
    return bad("grpc.publisher_spin_us", "must be in 0..1000000");
  }
  if (c.console.status_interval_s < 0) return bad("console.status_interval_s", "must be >= 0");
  if (c.runtime.realtime_priority < 0 || c.runtime.realtime_priority > 99) {
    return bad("runtime.realtime_priority", "must be in 0..99 (0 = no real-time scheduling)");
  }
  // Network-facing limits and credentials (issue 11).
  if (c.calibration.min_samples < 16) return bad("calibration.min_samples", "must be >= 16");
  if (c.calibration.cooldown_s < 0) return bad("calibration.cooldown_s", "must be >= 0");
  if (!(c.calibration.max_worsening >= 1)) {
    return bad("calibration.max_worsening", "must be >= 1 (a factor on the incumbent's error)");
  }
  if (!(c.calibration.worsening_floor >= 0 &&
        c.calibration.worsening_floor <= c.calibration.max_relative_rmse)) {
    return bad("calibration.worsening_floor",
               "must be in [0, calibration.max_relative_rmse] (a relative RMSE)");
  }
  if (c.grpc.max_message_bytes < 4096 || c.grpc.max_message_bytes > (64 << 20)) {
    return bad("grpc.max_message_bytes", "must be in 4096..67108864");
  }
  if (c.grpc.max_concurrent_streams < 1 || c.grpc.max_concurrent_streams > 100000) {
    return bad("grpc.max_concurrent_streams", "must be in 1..100000");
  }
  if (c.metrics.threads < 2 || c.metrics.threads > 64) {
    return bad("metrics.threads", "must be in 2..64");
  }
  if (c.metrics.request_timeout_ms < 100 || c.metrics.request_timeout_ms > 60000) {
    return bad("metrics.request_timeout_ms", "must be in 100..60000");
  }
  if (c.grpc.tls.cert_file.empty() != c.grpc.tls.key_file.empty()) {
    return bad(c.grpc.tls.cert_file.empty() ? "grpc.tls.cert_file" : "grpc.tls.key_file",
               "grpc.tls.cert_file and grpc.tls.key_file are set together");
  }
  if (!c.grpc.tls.client_ca_file.empty() && c.grpc.tls.cert_file.empty()) {
    return bad("grpc.tls.client_ca_file", "needs grpc.tls.cert_file and grpc.tls.key_file");
  }
  if (!c.admin.allowed_identities.empty() && c.grpc.tls.client_ca_file.empty()) {
    return bad("admin.allowed_identities",
               "needs grpc.tls.client_ca_file (identities come from verified client certificates)");
  }
  for (size_t i = 0; i < c.admin.allowed_identities.size(); ++i) {
    if (c.admin.allowed_identities[i].empty()) {
      return bad(absl::StrCat("admin.allowed_identities[", i, "]"), "must not be empty");
    }
  }
  if (c.admin.max_model_bytes < 1024 || c.admin.max_model_bytes > (uint64_t{16} << 30)) {
    return bad("admin.max_model_bytes", "must be in 1024..17179869184");
  }
  if (c.admin.token_file.empty() && c.admin.allowed_identities.empty() &&
      !IsLoopbackHost(ParseHostPort(c.admin.listen)->first)) {
    return bad("admin.listen",
               absl::StrCat(c.admin.listen,
                            " is not a loopback address; AdminService off loopback needs "
                            "credentials (admin.token_file or admin.allowed_identities)"));
  }

  // Paths (models, credentials, model_dir) are relative to the config file's directory.
  if (!origin.empty() && origin.front() != '<') {
    const std::filesystem::path base = std::filesystem::path(origin).parent_path();
    auto resolve = [&](std::string* p) {
      if (!p->empty() && std::filesystem::path(*p).is_relative()) {
        *p = (base / *p).lexically_normal().string();
      }
    };
    for (auto& m : c.models) resolve(&m.path);
    resolve(&c.feed.shard.map_file);
    resolve(&c.grpc.tls.cert_file);
    resolve(&c.grpc.tls.key_file);
    resolve(&c.grpc.tls.client_ca_file);
    resolve(&c.grpc.client_token_file);
    resolve(&c.admin.token_file);
    resolve(&c.admin.model_dir);
    resolve(&c.calibration.holidays_file);
  }
  if (c.admin.model_dir.empty() && !c.models.empty()) {
    c.admin.model_dir = std::filesystem::path(c.models[0].path).parent_path().string();
    if (c.admin.model_dir.empty()) c.admin.model_dir = ".";
  }
  if (auto s = ResolveShards(&c.feed.shard); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": ", s.message()));
  }
  if (auto s = ReadHolidays(&c.calibration); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": ", s.message()));
  }
  return c;
}

}  // namespace

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  std::vector<std::string> parts = absl::StrSplit(host, '.');
  if (parts.size() != 4 || parts[0] != "127") return false;
  for (const auto& p : parts) {
    int v = -1;
    if (!absl::SimpleAtoi(p, &v) || v < 0 || v > 255) return false;
  }
  return true;
}

absl::StatusOr<std::pair<std::string, uint16_t>> ParseHostPort(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrCat("expected host:port, got '", text, "'"));
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(text.substr(colon + 1), &port) || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad port in '", text, "'"));
  }
  return std::make_pair(text.substr(0, colon), static_cast<uint16_t>(port));
}

absl::StatusOr<Config> ParseConfig(const std::string& yaml_text, const std::string& origin,
                                   const Overrides& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": invalid YAML: ", e.what()));
  }
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": the top level must be a mapping"));
  }
  if (auto s = CheckDuplicateKeys(root, "", origin); !s.ok()) return s;
  for (const auto& o : overrides) {
    if (auto s = ApplyOverride(root, o); !s.ok()) return s;
  }
  return Build(root, origin);
}

absl::StatusOr<Config> LoadConfig(const std::string& path, const Overrides& overrides) {
  if (path.empty()) return ParseConfig("{}", "<defaults>", overrides);
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open config file"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path, overrides);
}

}  // namespace qsig::config
