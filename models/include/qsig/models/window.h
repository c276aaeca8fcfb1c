// The one window builder: the input a model reads is a window of `window` feature vectors of
// one instrument, oldest first (window x input_size floats, ModelSpec::window). Two sources feed
// it, with the same layout:
//  - live ticks: WindowHistory keeps, per instrument, a ring of the last `depth` vectors (the
//    server's tick path and its calibration store);
//  - a table of rows (feature files: qsig predict / replay / quantize / bench, training):
//    CopyTableWindow walks an instrument's rows back from a given row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace qsig::models {

// Per instrument ("stream", 0..streams-1), a ring of its last `depth` feature vectors of `width`
// floats, all in one buffer allocated by the constructor: Push, Tick and CopyWindow allocate
// nothing, lock nothing and throw nothing (the tick path). Before `window` vectors of a stream
// have arrived it has no window (Ready is false); after that the window slides one vector per
// Push, the oldest leaving the ring.
// Thread-safety: none; one thread at a time (the owner of the instrument, or under a lock).
class WindowHistory {
 public:
  WindowHistory() = default;
  // Allocates streams x depth x width floats (zeros); a depth below 1 is taken as 1.
  WindowHistory(size_t streams, int depth, int width);

  size_t streams() const noexcept { return counts_.size(); }
  int depth() const noexcept { return depth_; }
  int width() const noexcept { return width_; }

  // Appends `v` (width() floats) as the newest vector of `stream` (< streams()).
  void Push(size_t stream, const float* v) noexcept {
    uint64_t& n = counts_[stream];
    std::memcpy(Row(stream, n), v, sizeof(float) * static_cast<size_t>(width_));
    ++n;
  }
  // Vectors pushed to `stream` so far (never wraps).
  uint64_t count(size_t stream) const noexcept { return counts_[stream]; }
  // True once `stream` has a full window of `window` (<= depth()) vectors.
  bool Ready(size_t stream, int window) const noexcept {
    return window <= depth_ && counts_[stream] >= static_cast<uint64_t>(window);
  }
  // The k-th vector pushed to `stream` (from 0); k must be in [count - depth, count).
  std::span<const float> Tick(size_t stream, uint64_t k) const noexcept {
    return std::span<const float>(Row(stream, k), static_cast<size_t>(width_));
  }
  // Copies the stream's last `window` vectors, oldest first, into `out` (window x width()
  // floats). False (nothing written) if the stream is not Ready or `out` is too small.
  bool CopyWindow(size_t stream, int window, std::span<float> out) const noexcept {
    const size_t w = static_cast<size_t>(width_);
    if (!Ready(stream, window) || out.size() < static_cast<size_t>(window) * w) return false;
    const uint64_t first = counts_[stream] - static_cast<uint64_t>(window);
    for (int t = 0; t < window; ++t) {
      std::memcpy(out.data() + static_cast<size_t>(t) * w, Row(stream, first + t),
                  sizeof(float) * w);
    }
    return true;
  }

 private:
  float* Row(size_t stream, uint64_t k) noexcept {
    return values_.data() + (stream * static_cast<size_t>(depth_) + k % depth_) * width_;
  }
  const float* Row(size_t stream, uint64_t k) const noexcept {
    return values_.data() + (stream * static_cast<size_t>(depth_) + k % depth_) * width_;
  }

  int depth_ = 1;
  int width_ = 0;
  std::vector<float> values_;     // streams x depth x width; vector k of a stream at k % depth.
  std::vector<uint64_t> counts_;  // Per stream.
};

// The window ending at `row` of a row-major table: `values` holds rows of `row_stride` floats,
// and prev[r] is the previous row of row r's instrument (-1 for its first), so an instrument's
// rows may interleave with others'. Writes `window` rows, oldest first, each reduced to
// `columns` (out[t * columns.size() + c] = row_t[columns[c]]): window x columns.size() floats.
// False if the instrument has fewer than `window` rows up to `row` (out then partly written,
// newest rows first). Thread-safety: reentrant.
bool CopyTableWindow(std::span<const float> values, size_t row_stride,
                     std::span<const int64_t> prev, std::span<const int> columns, int window,
                     size_t row, float* out) noexcept;

}  // namespace qsig::models
