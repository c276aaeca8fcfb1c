// Book sanity: a crossed book, a price of 0 or beyond max_price, or an order dropped on a full
// table marks that instrument's vectors kFeatureFlagBookSuspect until the book is consistent.
#include <vector>

#include "feed_test_util.h"
#include "gtest/gtest.h"
#include "qsig/feeds/feed_processor.h"
#include "qsig/feeds/simulator.h"

namespace qsig::feeds {
namespace {

using testing::Bytes;
using testing::Encoder;
using testing::Feeder;
using testing::Msg;
using testing::Px;

FeedProcessorOptions Options() {
  FeedProcessorOptions o;
  o.max_instruments = 16;
  o.max_orders = 4096;
  o.max_levels = 64;
  return o;
}

Bytes Add(uint64_t ref, char side, uint32_t shares, uint32_t price, uint16_t locate = 1) {
  return Msg([&](uint8_t* p) {
    return Encoder::AddOrder(p, locate, 1000, ref, side, shares, "AAPL", price);
  });
}
Bytes Delete(uint64_t ref, uint16_t locate = 1) {
  return Msg([&](uint8_t* p) { return Encoder::Delete(p, locate, 2000, ref); });
}

bool Suspect(const FeatureVector& fv) { return (fv.flags & kFeatureFlagBookSuspect) != 0; }

// Two clean books: locate 1 at 10.00 / 10.10 and locate 2 at 20.00 / 20.10.
void TwoCleanBooks(Feeder& f) {
  f.Send({Add(1, 'B', 100, Px(10.00)), Add(2, 'S', 100, Px(10.10)), Add(3, 'B', 100, Px(20.00), 2),
          Add(4, 'S', 100, Px(20.10), 2)});
  ASSERT_FALSE(f.sink.vectors.empty());
  for (const FeatureVector& fv : f.sink.vectors) ASSERT_FALSE(Suspect(fv));
}

TEST(BookSanityTest, PriceZeroAskMarksTheInstrumentUntilItLeaves) {
  FeedProcessor feed(Options());
  Feeder f(feed);
  auto& v = f.sink.vectors;
  TwoCleanBooks(f);

  f.Send(Add(5, 'S', 100, 0));  // Crosses the book and halves the mid.
  ASSERT_EQ(v.back().locate, 1);
  EXPECT_TRUE(Suspect(v.back()));
  EXPECT_TRUE(feed.book_suspect(1));
  EXPECT_EQ(feed.stats().book_bad_price.load(), 1u);
  EXPECT_EQ(feed.stats().book_crossed.load(), 1u);
  EXPECT_EQ(feed.stats().suspect_books.load(), 1u);

  // Other instruments are unaffected; the marked one stays marked while the order rests.
  f.Send(Add(6, 'B', 50, Px(19.99), 2));
  EXPECT_EQ(v.back().locate, 2);
  EXPECT_FALSE(Suspect(v.back()));
  f.Send(Add(7, 'B', 50, Px(9.99)));
  EXPECT_TRUE(Suspect(v.back()));
  EXPECT_EQ(feed.stats().book_bad_price.load(), 1u) << "counted once per episode";

  f.Send(Delete(5));
  EXPECT_FALSE(Suspect(v.back()));
  EXPECT_FALSE(feed.book_suspect(1));
  EXPECT_EQ(feed.stats().suspect_books.load(), 0u);
  EXPECT_DOUBLE_EQ(v.back().mid_price, 10.05);
}

TEST(BookSanityTest, PriceZeroBidIsSuspectToo) {
  FeedProcessor feed(Options());
  Feeder f(feed);
  TwoCleanBooks(f);
  f.Send(Add(5, 'B', 100, 0));  // Worst bid: does not cross, still not a price.
  EXPECT_TRUE(Suspect(f.sink.vectors.back()));
  EXPECT_EQ(feed.stats().book_crossed.load(), 0u);
  EXPECT_EQ(feed.stats().book_bad_price.load(), 1u);
  f.Send(Delete(5));
  EXPECT_FALSE(Suspect(f.sink.vectors.back()));
}

TEST(BookSanityTest, PriceBeyondTheBoundMarksUntilReplacedAway) {
  FeedProcessorOptions o = Options();
  o.max_price = Px(1000.0);
  FeedProcessor feed(o);
  Feeder f(feed);
  TwoCleanBooks(f);
  f.Send(Add(5, 'S', 100, Px(5000.0)));  // Worst ask, far above the bound.
  EXPECT_TRUE(Suspect(f.sink.vectors.back()));
  EXPECT_EQ(feed.stats().book_bad_price.load(), 1u);
  EXPECT_EQ(feed.stats().book_crossed.load(), 0u);
  f.Send(Msg([](uint8_t* p) { return Encoder::Replace(p, 1, 3000, 5, 8, 100, Px(10.20)); }));
  EXPECT_FALSE(Suspect(f.sink.vectors.back()));
  f.Send(Add(9, 'B', 100, Px(1000.01)));  // Best bid above the bound (and crossed).
  EXPECT_TRUE(Suspect(f.sink.vectors.back()));
  EXPECT_EQ(feed.stats().book_bad_price.load(), 2u);
}

TEST(BookSanityTest, CrossingAddMarksUntilTheBookUncrosses) {
  FeedProcessor feed(Options());
  Feeder f(feed);
  auto& v = f.sink.vectors;
  TwoCleanBooks(f);
  f.Send(Add(5, 'B', 100, Px(10.20)));  // Bid above the best ask.
  EXPECT_TRUE(Suspect(v.back()));
  EXPECT_EQ(feed.stats().book_crossed.load(), 1u);
  EXPECT_EQ(feed.stats().book_bad_price.load(), 0u);
  // Executing the crossing bid in full uncrosses the book.
  f.Send(Msg([](uint8_t* p) { return Encoder::Executed(p, 1, 3000, 5, 100, 77); }));
  EXPECT_FALSE(Suspect(v.back()));
  // A locked book (bid == ask) is suspect too: one venue's book never locks.
  f.Send(Add(6, 'B', 100, Px(10.10)));
  EXPECT_TRUE(Suspect(v.back()));
  EXPECT_EQ(feed.stats().book_crossed.load(), 2u);
}

TEST(BookSanityTest, FullOrderTableMarksUntilTheDroppedOrderIsDeleted) {
  FeedProcessorOptions o = Options();
  o.max_orders = 4;
  FeedProcessor feed(o);
  Feeder f(feed);
  auto& v = f.sink.vectors;
  TwoCleanBooks(f);                     // Four orders: the table is full.
  f.Send(Add(5, 'B', 100, Px(10.05)));  // Dropped: this book is now missing an order.
  EXPECT_EQ(feed.stats().book_full.load(), 1u);
  EXPECT_EQ(feed.stats().book_dropped_order.load(), 1u);
  EXPECT_TRUE(feed.book_suspect(1));
  EXPECT_FALSE(feed.book_suspect(2));
  // Its next update carries the flag; the other instrument's do not.
  f.Send(Msg([](uint8_t* p) { return Encoder::Executed(p, 1, 3000, 2, 10, 78); }));
  EXPECT_EQ(v.back().locate, 1);
  EXPECT_TRUE(Suspect(v.back()));
  f.Send(Msg([](uint8_t* p) { return Encoder::Executed(p, 2, 3000, 4, 10, 79); }));
  EXPECT_EQ(v.back().locate, 2);
  EXPECT_FALSE(Suspect(v.back()));
  // The exchange deletes the order we could not hold: the book is whole again.
  f.Send(Delete(5));
  EXPECT_EQ(feed.stats().unknown_order.load(), 1u);
  EXPECT_FALSE(feed.book_suspect(1));
  f.Send(Msg([](uint8_t* p) { return Encoder::Executed(p, 1, 3000, 2, 10, 80); }));
  EXPECT_EQ(v.back().locate, 1);
  EXPECT_FALSE(Suspect(v.back()));
  EXPECT_EQ(feed.stats().suspect_books.load(), 0u);
}

TEST(BookSanityTest, NewSessionClearsTheMark) {
  FeedProcessorOptions o = Options();
  o.corroboration.confirm_packets = 1;
  FeedProcessor feed(o);
  Feeder f(feed);
  TwoCleanBooks(f);
  f.Send(Add(5, 'S', 100, 0));
  EXPECT_TRUE(feed.book_suspect(1));
  Feeder next(feed, "TESTSESS02");
  next.Send({Add(1, 'B', 100, Px(10.00)), Add(2, 'S', 100, Px(10.10))});
  EXPECT_FALSE(feed.book_suspect(1));
  EXPECT_FALSE(Suspect(next.sink.vectors.back()));
  EXPECT_EQ(feed.stats().suspect_books.load(), 0u);
}

// The simulator's clean stream never trips the checks.
TEST(BookSanityTest, SimulatedStreamIsNeverSuspect) {
  SimulatorOptions so;
  Simulator sim(so);
  FeedProcessorOptions o = Options();
  o.max_orders = 1 << 18;
  o.max_levels = 256;
  FeedProcessor feed(o);
  testing::CollectingSink sink;
  std::vector<uint8_t> buf(65536);
  for (int i = 0; i < 20'000; ++i) {
    const size_t n = sim.NextPacket(buf);
    feed.OnDatagram(std::span<const uint8_t>(buf.data(), n), 0, sink);
  }
  ASSERT_GT(sink.vectors.size(), 10'000u);
  EXPECT_EQ(feed.stats().book_crossed.load(), 0u);
  EXPECT_EQ(feed.stats().book_bad_price.load(), 0u);
  EXPECT_EQ(feed.stats().book_dropped_order.load(), 0u);
}

}  // namespace
}  // namespace qsig::feeds
