// The window builder (qsig/models/window.h).
#include "qsig/models/window.h"

#include <algorithm>

namespace qsig::models {

WindowHistory::WindowHistory(size_t streams, int depth, int width)
    : depth_(std::max(depth, 1)),
      width_(std::max(width, 0)),
      values_(streams * static_cast<size_t>(depth_) * static_cast<size_t>(width_), 0.0f),
      counts_(streams, 0) {}

bool CopyTableWindow(std::span<const float> values, size_t row_stride,
                     std::span<const int64_t> prev, std::span<const int> columns, int window,
                     size_t row, float* out) noexcept {
  const size_t nc = columns.size();
  int64_t r = static_cast<int64_t>(row);
  for (int step = window - 1; step >= 0; --step) {
    if (r < 0) return false;
    const float* src = values.data() + static_cast<size_t>(r) * row_stride;
    float* dst = out + static_cast<size_t>(step) * nc;
    for (size_t c = 0; c < nc; ++c) dst[c] = src[columns[c]];
    r = prev[static_cast<size_t>(r)];
  }
  return true;
}

}  // namespace qsig::models
