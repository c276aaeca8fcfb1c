// Order-level books for many instruments: one live-order table and per-side price levels.
//
// Everything is allocated in the constructor; the operations never allocate, never throw and
// run in O(1) expected (order lookup) plus O(distance from the touch) (level lookup). Not
// thread-safe: one feed thread owns an OrderBooks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace qsig::feeds::internal {

enum class Side : uint8_t { kBid = 0, kAsk = 1 };

// One live order. `locate == 0` marks an empty slot (valid locates start at 1).
struct Order {
  uint64_t ref = 0;
  uint32_t price = 0;
  uint32_t shares = 0;
  uint16_t locate = 0;
  Side side = Side::kBid;
};

// Open-addressing hash table of live orders keyed by (locate, order ref), linear probing with
// backward-shift deletion (no tombstones, so probe lengths stay short under churn).
class OrderTable {
 public:
  explicit OrderTable(size_t max_orders);

  Order* Find(uint16_t locate, uint64_t ref) noexcept {
    for (size_t i = Home(locate, ref);; i = (i + 1) & mask_) {
      Order& o = slots_[i];
      if (o.locate == 0) return nullptr;
      if (o.ref == ref && o.locate == locate) return &o;
    }
  }
  // Inserts a new order; the caller has checked it is not present. False when full.
  bool Insert(const Order& order) noexcept;
  void Erase(Order* order) noexcept;
  void Clear() noexcept;
  size_t size() const noexcept { return size_; }
  size_t max_orders() const noexcept { return max_orders_; }

 private:
  size_t Home(uint16_t /*locate*/, uint64_t ref) const noexcept {
    // ITCH order refs are assigned sequentially and are unique across the day, so the low bits
    // are already well spread, and orders added close in time (the ones most likely to be
    // executed or cancelled next) share cache lines and hardware prefetch streams. Equal refs on
    // different books (not produced by Nasdaq) still work: they collide and probe.
    return static_cast<size_t>(ref) & mask_;
  }

  std::vector<Order> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
  size_t max_orders_ = 0;
};

// Aggregated price level. Levels are stored with the best price LAST so that the busy end of
// the book (near the touch) is cheap to insert into and erase from.
struct Level {
  uint32_t key = 0;     // Sort key: price for bids, ~price for asks (ascending = worse..best).
  uint32_t orders = 0;  // Live orders at this level.
  uint64_t shares = 0;  // Total displayed shares.
};

// One side of a book over caller-owned storage of `capacity` levels.
class BookSide {
 public:
  BookSide() = default;
  BookSide(Level* storage, int capacity, Side side) noexcept
      : levels_(storage), capacity_(capacity), side_(side) {}

  // Adds one order's shares (or, with new_order false, shares to an order already counted at
  // that level); false when a new level is needed and the array is full.
  bool Add(uint32_t price, uint32_t shares, bool new_order = true) noexcept;
  // Removes `shares` from the level at `price`, and one order if `order_removed`.
  void Reduce(uint32_t price, uint32_t shares, bool order_removed) noexcept;
  void Clear() noexcept { n_ = 0; }

  int depth() const noexcept { return n_; }
  bool empty() const noexcept { return n_ == 0; }
  // i = 0 is the best level; requires i < depth().
  uint32_t price(int i) const noexcept { return FromKey(levels_[n_ - 1 - i].key); }
  uint64_t shares(int i) const noexcept { return levels_[n_ - 1 - i].shares; }
  uint32_t orders(int i) const noexcept { return levels_[n_ - 1 - i].orders; }

 private:
  uint32_t ToKey(uint32_t price) const noexcept { return side_ == Side::kBid ? price : ~price; }
  uint32_t FromKey(uint32_t key) const noexcept { return side_ == Side::kBid ? key : ~key; }
  // Index of the first level (from the best end) whose key is <= key, scanning down; returns
  // the insertion point i such that levels_[i-1].key <= key < levels_[i].key.
  int UpperBound(uint32_t key) const noexcept {
    int i = n_;
    while (i > 0 && levels_[i - 1].key > key) --i;
    return i;
  }

  Level* levels_ = nullptr;
  int capacity_ = 0;
  int n_ = 0;
  Side side_ = Side::kBid;
};

enum class BookResult : uint8_t {
  kOk,
  kUnknownInstrument,  // Locate 0 or above max_instruments.
  kUnknownOrder,       // No live order with that (locate, ref).
  kFull,               // Order table or level array full.
  kInvalid,            // Bad side, zero shares, or a duplicate live order ref.
};

// One book mutation, recorded while a sequence gap is open so that the books can be wound back
// to the last exact state when the missing messages arrive (feed_processor.cc).
struct UndoEntry {
  enum Kind : uint8_t { kAdded, kChanged, kReplaced };
  Order before;          // kAdded: the order that was added; else the order before the change.
  uint64_t new_ref = 0;  // kReplaced: the ref that replaced `before`.
  Kind kind = kAdded;
};

// Books for locates 1..max_instruments sharing one order table.
class OrderBooks {
 public:
  OrderBooks(int max_instruments, int max_orders, int max_levels);

  BookResult Add(uint16_t locate, uint64_t ref, char side, uint32_t shares,
                 uint32_t price) noexcept;
  // Execution or cancel: removes up to `shares` (the order goes when it reaches zero).
  // On success *side is the resting order's side and *price its price.
  BookResult Reduce(uint16_t locate, uint64_t ref, uint32_t shares, Side* side,
                    uint32_t* price) noexcept;
  BookResult Delete(uint16_t locate, uint64_t ref) noexcept;
  // Cancel-replace: the new order keeps the side, takes new ref, shares and price.
  BookResult Replace(uint16_t locate, uint64_t orig_ref, uint64_t new_ref, uint32_t shares,
                     uint32_t price) noexcept;
  void Clear() noexcept;

  // While a log is set, every successful mutation appends one UndoEntry to it. The vector's
  // capacity is reserved by the owner; when it is full, `*overflow` is set and nothing is
  // appended (the owner then gives up on undoing). nullptr stops logging.
  void set_undo_log(std::vector<UndoEntry>* log, bool* overflow) noexcept {
    undo_ = log;
    undo_overflow_ = overflow;
  }
  // Reverts the logged mutations, newest first, and clears the log. Logging is off meanwhile.
  void Undo(std::vector<UndoEntry>& log) noexcept;
  const Order* FindOrder(uint16_t locate, uint64_t ref) noexcept {
    return valid_locate(locate) ? table_.Find(locate, ref) : nullptr;
  }

  bool valid_locate(uint16_t locate) const noexcept {
    return locate != 0 && locate <= max_instruments_;
  }
  const BookSide& bids(uint16_t locate) const noexcept { return sides_[2 * locate]; }
  const BookSide& asks(uint16_t locate) const noexcept { return sides_[2 * locate + 1]; }
  const OrderTable& orders() const noexcept { return table_; }
  int max_instruments() const noexcept { return max_instruments_; }

 private:
  BookSide& side(uint16_t locate, Side s) noexcept {
    return sides_[2 * locate + static_cast<int>(s)];
  }

  void Log(const Order& before, UndoEntry::Kind kind, uint64_t new_ref = 0) noexcept {
    if (undo_ == nullptr) return;
    if (undo_->size() == undo_->capacity()) {
      *undo_overflow_ = true;
      return;
    }
    undo_->push_back(UndoEntry{before, new_ref, kind});
  }
  // Puts back an order as it was (re-inserting it, or restoring its shares).
  void Restore(const Order& before) noexcept;
  void Remove(uint16_t locate, uint64_t ref) noexcept;

  int max_instruments_;
  std::vector<UndoEntry>* undo_ = nullptr;
  bool* undo_overflow_ = nullptr;
  OrderTable table_;
  std::vector<Level> level_storage_;
  std::vector<BookSide> sides_;  // 2 per locate, index 2*locate + side; locate 0 unused.
};

}  // namespace qsig::feeds::internal
