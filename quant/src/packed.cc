// Packing s8 weights into the VNNI block layout (packed.h).
#include "qsig/quant/packed.h"

#include <algorithm>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qsig::quant {
namespace {

int RoundUp(int v, int m) { return (v + m - 1) / m * m; }

}  // namespace

absl::StatusOr<PackedWeightsS8> PackWeightsS8(const int8_t* w, int rows, int cols, ptrdiff_t ldw,
                                              std::span<const float> scales) {
  if (rows <= 0 || cols <= 0 || cols > kMaxPackedCols) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot pack a ", rows, " x ", cols,
                     " weight matrix: need rows > 0 and 0 < cols <= ", kMaxPackedCols));
  }
  if (ldw < cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight leading dimension ", ldw, " is below cols ", cols));
  }
  if (!scales.empty() && scales.size() != static_cast<size_t>(rows)) {
    return absl::InvalidArgumentError(
        absl::StrCat("got ", scales.size(), " per-row scales for ", rows, " rows"));
  }
  PackedWeightsS8 p;
  p.rows = rows;
  p.cols = cols;
  p.rows_padded = RoundUp(rows, kPackRows);
  p.cols_padded = RoundUp(cols, kPackCols);
  p.data.assign(static_cast<size_t>(p.rows_padded) * p.cols_padded, 0);
  p.row_sums.assign(static_cast<size_t>(p.rows_padded), 0);
  p.scales.assign(static_cast<size_t>(p.rows_padded), 1.0f);
  const int groups = p.groups();
  for (int r = 0; r < rows; ++r) {
    const int8_t* src = w + r * ldw;
    int32_t sum = 0;
    for (int c = 0; c < cols; ++c) {
      const size_t block = static_cast<size_t>(r / kPackRows) * groups + c / kPackCols;
      p.data[block * (kPackRows * kPackCols) + (r % kPackRows) * kPackCols + c % kPackCols] =
          src[c];
      sum += src[c];
      p.max_abs = std::max(p.max_abs, std::abs(int{src[c]}));
    }
    p.row_sums[static_cast<size_t>(r)] = sum;
    if (!scales.empty()) p.scales[static_cast<size_t>(r)] = scales[static_cast<size_t>(r)];
  }
  return p;
}

absl::StatusOr<PackedWeightsS8> PackWeightsS8(const PerChannelS8& q) {
  if (q.data.size() != static_cast<size_t>(q.rows) * static_cast<size_t>(q.cols) ||
      q.scales.size() != static_cast<size_t>(q.rows)) {
    return absl::InvalidArgumentError(absl::StrCat("inconsistent PerChannelS8: ", q.rows, " x ",
                                                   q.cols, " with ", q.data.size(), " values and ",
                                                   q.scales.size(), " scales"));
  }
  return PackWeightsS8(q.data.data(), q.rows, q.cols, q.cols, q.scales);
}

}  // namespace qsig::quant
