// OrderBooks against a brute-force std::map reference over long random operation sequences.
#include "internal/order_book.h"

#include <map>
#include <ostream>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace qsig::feeds::internal {
namespace {

// The obvious implementation: orders by (locate, ref); levels as price -> (shares, orders).
class ReferenceBooks {
 public:
  struct Ord {
    Side side;
    uint32_t price;
    uint32_t shares;
  };
  struct Lvl {
    uint64_t shares = 0;
    uint32_t orders = 0;
  };

  ReferenceBooks(int max_instruments, size_t max_orders, size_t max_levels)
      : max_instruments_(max_instruments), max_orders_(max_orders), max_levels_(max_levels) {}

  BookResult Add(uint16_t locate, uint64_t ref, char side, uint32_t shares, uint32_t price) {
    if (locate == 0 || locate > max_instruments_) return BookResult::kUnknownInstrument;
    if ((side != 'B' && side != 'S') || shares == 0) return BookResult::kInvalid;
    if (orders_.count({locate, ref})) return BookResult::kInvalid;
    if (orders_.size() >= max_orders_) return BookResult::kFull;
    const Side s = side == 'B' ? Side::kBid : Side::kAsk;
    auto& levels = Levels(locate, s);
    if (!levels.count(price) && levels.size() >= max_levels_) return BookResult::kFull;
    orders_[{locate, ref}] = Ord{s, price, shares};
    levels[price].shares += shares;
    levels[price].orders += 1;
    return BookResult::kOk;
  }
  BookResult Reduce(uint16_t locate, uint64_t ref, uint32_t shares) {
    if (locate == 0 || locate > max_instruments_) return BookResult::kUnknownInstrument;
    auto it = orders_.find({locate, ref});
    if (it == orders_.end()) return BookResult::kUnknownOrder;
    Ord& o = it->second;
    const uint32_t removed = std::min(shares, o.shares);
    auto& levels = Levels(locate, o.side);
    levels[o.price].shares -= removed;
    o.shares -= removed;
    if (o.shares == 0) Remove(locate, it);
    return BookResult::kOk;
  }
  BookResult Delete(uint16_t locate, uint64_t ref) {
    if (locate == 0 || locate > max_instruments_) return BookResult::kUnknownInstrument;
    auto it = orders_.find({locate, ref});
    if (it == orders_.end()) return BookResult::kUnknownOrder;
    Levels(locate, it->second.side)[it->second.price].shares -= it->second.shares;
    Remove(locate, it);
    return BookResult::kOk;
  }
  BookResult Replace(uint16_t locate, uint64_t orig, uint64_t new_ref, uint32_t shares,
                     uint32_t price) {
    if (locate == 0 || locate > max_instruments_) return BookResult::kUnknownInstrument;
    auto it = orders_.find({locate, orig});
    if (it == orders_.end()) return BookResult::kUnknownOrder;
    if (shares == 0 || (new_ref != orig && orders_.count({locate, new_ref}))) {
      return BookResult::kInvalid;
    }
    const Side s = it->second.side;
    Delete(locate, orig);
    return Add(locate, new_ref, s == Side::kBid ? 'B' : 'S', shares, price);
  }

  // Levels best first.
  std::vector<std::pair<uint32_t, Lvl>> Top(uint16_t locate, Side s) const {
    std::vector<std::pair<uint32_t, Lvl>> out;
    const auto& all = s == Side::kBid ? bids_ : asks_;
    const auto found = all.find(locate);
    if (found == all.end()) return out;
    const auto& levels = found->second;
    if (s == Side::kBid) {
      for (auto it = levels.rbegin(); it != levels.rend(); ++it) out.push_back(*it);
    } else {
      for (const auto& l : levels) out.push_back(l);
    }
    return out;
  }
  size_t size() const { return orders_.size(); }
  // Some live order of `locate`, for targeted operations.
  bool Pick(std::mt19937_64& rng, uint16_t locate, uint64_t* ref) const {
    if (orders_.empty()) return false;
    auto it = orders_.lower_bound({locate, rng() % 4096});
    if (it == orders_.end() || it->first.first != locate) return false;
    *ref = it->first.second;
    return true;
  }

 private:
  std::map<uint32_t, Lvl>& Levels(uint16_t locate, Side s) {
    return s == Side::kBid ? bids_[locate] : asks_[locate];
  }
  void Remove(uint16_t locate, std::map<std::pair<uint16_t, uint64_t>, Ord>::iterator it) {
    auto& levels = Levels(locate, it->second.side);
    auto l = levels.find(it->second.price);
    if (--l->second.orders == 0) levels.erase(l);
    orders_.erase(it);
  }

  uint16_t max_instruments_;
  size_t max_orders_;
  size_t max_levels_;
  std::map<std::pair<uint16_t, uint64_t>, Ord> orders_;
  std::map<uint16_t, std::map<uint32_t, Lvl>> bids_, asks_;
};

void ExpectSameBooks(const OrderBooks& books, const ReferenceBooks& ref, int max_instruments,
                     bool full_depth) {
  for (uint16_t locate = 1; locate <= max_instruments; ++locate) {
    for (Side s : {Side::kBid, Side::kAsk}) {
      const BookSide& side = s == Side::kBid ? books.bids(locate) : books.asks(locate);
      const auto expected = ref.Top(locate, s);
      ASSERT_EQ(side.depth(), static_cast<int>(expected.size()))
          << "locate " << locate << " side " << static_cast<int>(s);
      const size_t n = full_depth ? expected.size() : std::min<size_t>(expected.size(), 5);
      for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(side.price(static_cast<int>(i)), expected[i].first) << "level " << i;
        ASSERT_EQ(side.shares(static_cast<int>(i)), expected[i].second.shares) << "level " << i;
        ASSERT_EQ(side.orders(static_cast<int>(i)), expected[i].second.orders) << "level " << i;
      }
    }
  }
  ASSERT_EQ(books.orders().size(), ref.size());
}

struct Config {
  int max_instruments;
  int max_orders;
  int max_levels;
  int ops;
  uint32_t price_span;  // Distinct prices: small spans pile orders onto few levels.
};

void PrintTo(const Config& c, std::ostream* os) {
  *os << c.max_instruments << " instruments, " << c.max_orders << " orders, " << c.max_levels
      << " levels, " << c.ops << " ops, " << c.price_span << " prices";
}

class FeedOrderBookTest : public ::testing::TestWithParam<Config> {};

TEST_P(FeedOrderBookTest, MatchesReferenceOverRandomOperations) {
  const Config c = GetParam();
  OrderBooks books(c.max_instruments, c.max_orders, c.max_levels);
  ReferenceBooks ref(c.max_instruments, static_cast<size_t>(c.max_orders),
                     static_cast<size_t>(c.max_levels));
  std::mt19937_64 rng(c.ops + c.max_levels);
  uint64_t next_ref = 1;
  int non_ok = 0;
  for (int op = 0; op < c.ops; ++op) {
    // Locates 0 and max+1 exercise the out-of-range path.
    const auto locate = static_cast<uint16_t>(rng() % (c.max_instruments + 2));
    uint64_t target = rng() % 4096;  // Usually unknown unless picked below.
    const bool live = ref.Pick(rng, locate, &target);
    const uint32_t shares = static_cast<uint32_t>(rng() % 5 == 0 ? 0 : 1 + rng() % 500);
    const uint32_t price = 1'000'000 + 100 * static_cast<uint32_t>(rng() % c.price_span);
    const int kind = static_cast<int>(rng() % 100);
    BookResult got, want;
    Side side;
    uint32_t px;
    if (kind < 45) {
      // Occasionally reuse a live ref (duplicate) or send a bad side.
      const uint64_t r = rng() % 50 == 0 && live ? target : next_ref++ % 4096;
      const char sd = rng() % 100 == 0 ? 'X' : (rng() % 2 ? 'B' : 'S');
      got = books.Add(locate, r, sd, shares, price);
      want = ref.Add(locate, r, sd, shares, price);
    } else if (kind < 70) {
      got = books.Reduce(locate, target, shares, &side, &px);
      want = ref.Reduce(locate, target, shares);
    } else if (kind < 90) {
      got = books.Delete(locate, target);
      want = ref.Delete(locate, target);
    } else {
      const uint64_t r = next_ref++ % 4096;
      got = books.Replace(locate, target, r, shares, price);
      want = ref.Replace(locate, target, r, shares, price);
    }
    ASSERT_EQ(static_cast<int>(got), static_cast<int>(want)) << "op " << op << " kind " << kind;
    non_ok += got != BookResult::kOk;
    ExpectSameBooks(books, ref, c.max_instruments, op % 1000 == 0);
    if (::testing::Test::HasFatalFailure()) {
      ADD_FAILURE() << "diverged at op " << op;
      return;
    }
  }
  EXPECT_GT(non_ok, 0);
  EXPECT_LT(non_ok, c.ops);
}

INSTANTIATE_TEST_SUITE_P(
    Configs, FeedOrderBookTest,
    ::testing::Values(Config{3, 1 << 12, 256, 150'000, 40},  // Roomy: deep books.
                      Config{2, 300, 256, 100'000, 400},     // Order table often full.
                      Config{2, 1 << 12, 8, 100'000, 30}));  // Level arrays often full.

TEST(FeedOrderTableTest, SurvivesChurnAtFullLoad) {
  OrderTable table(1000);
  std::map<uint64_t, uint32_t> ref;
  std::mt19937_64 rng(3);
  for (int i = 0; i < 200'000; ++i) {
    const uint64_t key = rng() % 1500;
    Order* o = table.Find(1, key);
    ASSERT_EQ(o != nullptr, ref.count(key) == 1) << "op " << i;
    if (o != nullptr) {
      ASSERT_EQ(o->shares, ref[key]);
      table.Erase(o);
      ref.erase(key);
    } else {
      const bool inserted = table.Insert(Order{key, 1, static_cast<uint32_t>(i), 1, Side::kBid});
      ASSERT_EQ(inserted, ref.size() < 1000);
      if (inserted) ref[key] = static_cast<uint32_t>(i);
    }
  }
  EXPECT_EQ(table.size(), ref.size());
  table.Clear();
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.Find(1, ref.begin()->first), nullptr);
}

}  // namespace
}  // namespace qsig::feeds::internal
