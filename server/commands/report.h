// Formatting shared by the commands' reports (tables for a person, JSON for tools).
#pragma once

#include <cmath>
#include <string>

#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace qsig::commands {

// A fraction as a percentage with two decimals: 0.1234 -> "12.34%".
inline std::string Pct(double x) { return absl::StrFormat("%.2f%%", 100.0 * x); }

// A JSON number, or null where the value is NaN or infinite (JSON has neither).
inline nlohmann::json Num(double x) {
  return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json();
}

}  // namespace qsig::commands
