// String concatenation for cold-path error messages.
//
// The system abseil is built with its own absl::string_view, which absl::StrCat cannot take
// from std::string_view; this helper accepts both and numbers.
#pragma once

#include <string>
#include <string_view>
#include <type_traits>

namespace qsig::feeds::internal {

template <typename... Args>
std::string Cat(const Args&... args) {
  std::string out;
  auto append = [&out](const auto& a) {
    using T = std::decay_t<decltype(a)>;
    if constexpr (std::is_arithmetic_v<T>) {
      out += std::to_string(a);
    } else {
      out += std::string_view(a);
    }
  };
  (append(args), ...);
  return out;
}

}  // namespace qsig::feeds::internal
