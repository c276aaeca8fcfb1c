// The feature library: named, parameterized features chosen in configuration.
//
// A feature set is a list of FeatureSpec; FeedProcessorOptions::features selects it (empty = the
// default set, the 8 features the demo models were trained on, in that order). Names are the
// columns of `qsig features` output and the names a model's normalization statistics are keyed
// by. Definitions: feeds/README.md, "Feature library". Cold path; thread-compatible.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace qsig::feeds {

struct FeatureSpec {
  std::string name;                                // Kind, e.g. "ret", "imbalance".
  std::map<std::string, std::string> params = {};  // e.g. {"horizon": "10"}; values as text.
  std::string alias = {};  // Output name; "" = derived from kind and params ("ret_10").
  bool operator==(const FeatureSpec&) const = default;
};

// Kind, parameters with defaults, and a one-line definition, for every feature kind.
struct FeatureKindInfo {
  std::string name;
  std::string params;  // e.g. "horizon=1 (updates, 1..255)".
  std::string doc;
};
const std::vector<FeatureKindInfo>& FeatureKinds();

// ret(1) ret(10) ret(50) spread_bps imbalance(1) imbalance(5) trade_flow microprice_dev_bps.
std::vector<FeatureSpec> DefaultFeatureSpecs();

// Validates a set and returns its output names in vector order. Errors name the entry (index
// and kind), the parameter and the allowed range.
absl::StatusOr<std::vector<std::string>> FeatureNames(const std::vector<FeatureSpec>& specs);

// Parses the text form used by CLI flags and accepted from YAML scalars/lists:
//   "ret(horizon=1), ret(horizon=10) as r10, spread_bps, imbalance(levels=5)"
// Items are separated by commas or newlines outside parentheses/braces; an item may also be
// a YAML flow mapping "{name: ret, horizon: 10, as: r10}". Whitespace is ignored.
absl::StatusOr<std::vector<FeatureSpec>> ParseFeatureSpecs(std::string_view text);

// The text form of a set (ParseFeatureSpecs(FormatFeatureSpecs(s)) == s).
std::string FormatFeatureSpecs(const std::vector<FeatureSpec>& specs);

}  // namespace qsig::feeds
