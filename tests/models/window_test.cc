// The window builder (qsig/models/window.h): ordering, partial fill, wrap-around, streams kept
// apart, column selection, and the ring and the table giving the same windows.
#include "qsig/models/window.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"

namespace qsig::models {
namespace {

// Vector k of stream s: {100 s + 10 k + 0, 100 s + 10 k + 1, ...}, so every float says where it
// came from.
std::vector<float> Vec(int s, int k, int width) {
  std::vector<float> v(static_cast<size_t>(width));
  for (int j = 0; j < width; ++j) v[static_cast<size_t>(j)] = 100.0f * s + 10.0f * k + j;
  return v;
}

TEST(WindowHistory, NoWindowBeforeEnoughVectors) {
  WindowHistory h(1, 4, 2);
  std::vector<float> out(8, -1.0f);
  for (int k = 0; k < 3; ++k) {
    SCOPED_TRACE(k);
    EXPECT_FALSE(h.Ready(0, 4));
    EXPECT_FALSE(h.CopyWindow(0, 4, out));
    h.Push(0, Vec(0, k, 2).data());
    EXPECT_EQ(h.count(0), static_cast<uint64_t>(k + 1));
  }
  EXPECT_EQ(out, std::vector<float>(8, -1.0f));  // A refused copy writes nothing.
  EXPECT_TRUE(h.Ready(0, 3));                    // A shorter window is ready already.
  EXPECT_TRUE(h.Ready(0, 1));
  h.Push(0, Vec(0, 3, 2).data());
  EXPECT_TRUE(h.Ready(0, 4));
  ASSERT_TRUE(h.CopyWindow(0, 4, out));
  EXPECT_EQ(out, (std::vector<float>{0, 1, 10, 11, 20, 21, 30, 31}));  // Oldest first.
}

TEST(WindowHistory, SlidesOneVectorPerPushAcrossTheWrap) {
  const int depth = 3, width = 2;
  WindowHistory h(1, depth, width);
  std::vector<float> out(static_cast<size_t>(depth * width));
  for (int k = 0; k < 11; ++k) {
    SCOPED_TRACE(k);
    h.Push(0, Vec(0, k, width).data());
    if (k + 1 < depth) continue;
    ASSERT_TRUE(h.CopyWindow(0, depth, out));
    std::vector<float> want;
    for (int t = k - depth + 1; t <= k; ++t) {
      for (float x : Vec(0, t, width)) want.push_back(x);
    }
    EXPECT_EQ(out, want);
    // Tick(k) is the k-th vector for the last depth vectors.
    for (int t = k - depth + 1; t <= k; ++t) {
      const std::span<const float> v = h.Tick(0, static_cast<uint64_t>(t));
      EXPECT_EQ(std::vector<float>(v.begin(), v.end()), Vec(0, t, width));
    }
  }
}

TEST(WindowHistory, ShorterWindowIsTheNewestVectors) {
  WindowHistory h(1, 5, 1);
  for (int k = 0; k < 7; ++k) h.Push(0, Vec(0, k, 1).data());
  std::vector<float> out(2);
  ASSERT_TRUE(h.CopyWindow(0, 2, out));
  EXPECT_EQ(out, (std::vector<float>{50, 60}));
}

TEST(WindowHistory, RefusesWindowsItCannotHold) {
  WindowHistory h(1, 2, 1);
  for (int k = 0; k < 5; ++k) h.Push(0, Vec(0, k, 1).data());
  std::vector<float> out(3, -1.0f);
  EXPECT_FALSE(h.Ready(0, 3));  // Deeper than the ring.
  EXPECT_FALSE(h.CopyWindow(0, 3, out));
  std::vector<float> small(1);
  EXPECT_FALSE(h.CopyWindow(0, 2, small));  // Output too small.
  EXPECT_EQ(out, std::vector<float>(3, -1.0f));
}

TEST(WindowHistory, StreamsAreIndependent) {
  WindowHistory h(3, 2, 2);
  EXPECT_EQ(h.streams(), 3u);
  EXPECT_EQ(h.depth(), 2);
  EXPECT_EQ(h.width(), 2);
  // Interleaved: stream 2 gets three vectors, stream 0 one, stream 1 none.
  h.Push(2, Vec(2, 0, 2).data());
  h.Push(0, Vec(0, 0, 2).data());
  h.Push(2, Vec(2, 1, 2).data());
  h.Push(2, Vec(2, 2, 2).data());
  EXPECT_EQ(h.count(0), 1u);
  EXPECT_EQ(h.count(1), 0u);
  EXPECT_EQ(h.count(2), 3u);
  EXPECT_FALSE(h.Ready(1, 1));
  EXPECT_FALSE(h.Ready(0, 2));
  std::vector<float> out(4);
  ASSERT_TRUE(h.CopyWindow(2, 2, out));
  EXPECT_EQ(out, (std::vector<float>{210, 211, 220, 221}));
  ASSERT_TRUE(h.CopyWindow(0, 1, std::span<float>(out.data(), 2)));
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[1], 1.0f);
}

// A table of rows of 3 columns, two instruments interleaved: rows 0, 2, 3 are instrument A's,
// rows 1, 4 instrument B's.
struct Table {
  std::vector<float> values;
  std::vector<int64_t> prev;
};
Table Interleaved() {
  Table t;
  const int owner[] = {0, 1, 0, 0, 1};
  int seen[2] = {0, 0};
  int64_t last[2] = {-1, -1};
  for (int r = 0; r < 5; ++r) {
    const int s = owner[r];
    for (float x : Vec(s, seen[s]++, 3)) t.values.push_back(x);
    t.prev.push_back(last[s]);
    last[s] = r;
  }
  return t;
}

TEST(CopyTableWindow, FollowsTheInstrumentsRowsOldestFirst) {
  const Table t = Interleaved();
  const std::vector<int> all = {0, 1, 2};
  std::vector<float> out(9);
  ASSERT_TRUE(CopyTableWindow(t.values, 3, t.prev, all, 3, 3, out.data()));
  EXPECT_EQ(out, (std::vector<float>{0, 1, 2, 10, 11, 12, 20, 21, 22}));
  ASSERT_TRUE(CopyTableWindow(t.values, 3, t.prev, all, 2, 4, out.data()));
  EXPECT_EQ(std::vector<float>(out.begin(), out.begin() + 6),
            (std::vector<float>{100, 101, 102, 110, 111, 112}));
}

TEST(CopyTableWindow, FalseBeforeEnoughRows) {
  const Table t = Interleaved();
  const std::vector<int> all = {0, 1, 2};
  std::vector<float> out(9);
  EXPECT_FALSE(CopyTableWindow(t.values, 3, t.prev, all, 3, 2, out.data()));  // A has 2 rows.
  EXPECT_FALSE(CopyTableWindow(t.values, 3, t.prev, all, 3, 4, out.data()));  // B has 2 rows.
  EXPECT_TRUE(CopyTableWindow(t.values, 3, t.prev, all, 2, 2, out.data()));
}

TEST(CopyTableWindow, SelectsAndReordersColumns) {
  const Table t = Interleaved();
  const std::vector<int> cols = {2, 0};
  std::vector<float> out(4);
  ASSERT_TRUE(CopyTableWindow(t.values, 3, t.prev, cols, 2, 3, out.data()));
  EXPECT_EQ(out, (std::vector<float>{12, 10, 22, 20}));
}

// The two sources give the same window for the same history: the ring fed the table's rows in
// order, and the table walked back from each row.
TEST(CopyTableWindow, AgreesWithTheRing) {
  const Table t = Interleaved();
  const int owner[] = {0, 1, 0, 0, 1};
  const std::vector<int> all = {0, 1, 2};
  for (int window = 1; window <= 3; ++window) {
    WindowHistory h(2, 3, 3);
    for (size_t r = 0; r < 5; ++r) {
      SCOPED_TRACE(absl::StrCat("window ", window, " row ", r));
      const size_t s = static_cast<size_t>(owner[r]);
      h.Push(s, t.values.data() + r * 3);
      std::vector<float> ring(static_cast<size_t>(window) * 3, -1.0f);
      std::vector<float> table(ring.size(), -1.0f);
      const bool ring_ok = h.CopyWindow(s, window, ring);
      ASSERT_EQ(CopyTableWindow(t.values, 3, t.prev, all, window, r, table.data()), ring_ok);
      if (ring_ok) {
        EXPECT_EQ(ring, table);
      }
    }
  }
}

}  // namespace
}  // namespace qsig::models
