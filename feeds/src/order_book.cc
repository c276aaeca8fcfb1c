#include "internal/order_book.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace qsig::feeds::internal {

OrderTable::OrderTable(size_t max_orders) : max_orders_(std::max<size_t>(max_orders, 1)) {
  // Load factor stays <= 2/3 at max_orders, which keeps linear-probe runs short.
  const size_t capacity = std::bit_ceil(max_orders_ + max_orders_ / 2 + 1);
  slots_.assign(capacity, Order{});  // Touches every page before the first tick.
  mask_ = capacity - 1;
}

bool OrderTable::Insert(const Order& order) noexcept {
  if (size_ >= max_orders_) return false;
  size_t i = Home(order.locate, order.ref);
  while (slots_[i].locate != 0) i = (i + 1) & mask_;
  slots_[i] = order;
  ++size_;
  return true;
}

void OrderTable::Erase(Order* order) noexcept {
  size_t hole = static_cast<size_t>(order - slots_.data());
  // Backward-shift deletion: pull later entries of the probe run into the hole unless their
  // home lies cyclically in (hole, j], where moving them would break their lookup.
  for (size_t j = (hole + 1) & mask_; slots_[j].locate != 0; j = (j + 1) & mask_) {
    const size_t home = Home(slots_[j].locate, slots_[j].ref);
    const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (stays) continue;
    slots_[hole] = slots_[j];
    hole = j;
  }
  slots_[hole] = Order{};
  --size_;
}

void OrderTable::Clear() noexcept {
  std::fill(slots_.begin(), slots_.end(), Order{});
  size_ = 0;
}

bool BookSide::Add(uint32_t price, uint32_t shares, bool new_order) noexcept {
  const uint32_t key = ToKey(price);
  const int i = UpperBound(key);
  if (i > 0 && levels_[i - 1].key == key) {
    levels_[i - 1].orders += new_order ? 1 : 0;
    levels_[i - 1].shares += shares;
    return true;
  }
  if (n_ == capacity_) return false;
  std::memmove(&levels_[i + 1], &levels_[i], sizeof(Level) * static_cast<size_t>(n_ - i));
  levels_[i] = Level{key, 1, shares};
  ++n_;
  return true;
}

void BookSide::Reduce(uint32_t price, uint32_t shares, bool order_removed) noexcept {
  const uint32_t key = ToKey(price);
  const int i = UpperBound(key) - 1;
  if (i < 0 || levels_[i].key != key) return;  // Unreachable while the book is consistent.
  Level& l = levels_[i];
  l.shares -= std::min<uint64_t>(l.shares, shares);
  if (order_removed) l.orders -= 1;
  if (l.orders == 0) {
    std::memmove(&levels_[i], &levels_[i + 1], sizeof(Level) * static_cast<size_t>(n_ - i - 1));
    --n_;
  }
}

OrderBooks::OrderBooks(int max_instruments, int max_orders, int max_levels)
    : max_instruments_(std::clamp(max_instruments, 1, 65535)),
      table_(static_cast<size_t>(std::max(max_orders, 1))) {
  const int levels = std::max(max_levels, 1);
  const size_t n_sides = 2 * (static_cast<size_t>(max_instruments_) + 1);
  level_storage_.assign(n_sides * static_cast<size_t>(levels), Level{});
  sides_.resize(n_sides);
  for (size_t s = 0; s < n_sides; ++s) {
    sides_[s] = BookSide(&level_storage_[s * static_cast<size_t>(levels)], levels,
                         s % 2 == 0 ? Side::kBid : Side::kAsk);
  }
}

BookResult OrderBooks::Add(uint16_t locate, uint64_t ref, char side_char, uint32_t shares,
                           uint32_t price) noexcept {
  if (!valid_locate(locate)) return BookResult::kUnknownInstrument;
  if ((side_char != 'B' && side_char != 'S') || shares == 0) return BookResult::kInvalid;
  if (table_.Find(locate, ref) != nullptr) return BookResult::kInvalid;
  const Side s = side_char == 'B' ? Side::kBid : Side::kAsk;
  if (table_.size() >= table_.max_orders()) return BookResult::kFull;
  if (!side(locate, s).Add(price, shares)) return BookResult::kFull;
  const Order o{ref, price, shares, locate, s};
  table_.Insert(o);
  Log(o, UndoEntry::kAdded);
  return BookResult::kOk;
}

BookResult OrderBooks::Reduce(uint16_t locate, uint64_t ref, uint32_t shares, Side* out_side,
                              uint32_t* out_price) noexcept {
  if (!valid_locate(locate)) return BookResult::kUnknownInstrument;
  Order* o = table_.Find(locate, ref);
  if (o == nullptr) return BookResult::kUnknownOrder;
  Log(*o, UndoEntry::kChanged);
  const uint32_t removed = std::min(shares, o->shares);
  const bool gone = removed == o->shares;
  *out_side = o->side;
  *out_price = o->price;
  side(locate, o->side).Reduce(o->price, removed, gone);
  if (gone) {
    table_.Erase(o);
  } else {
    o->shares -= removed;
  }
  return BookResult::kOk;
}

BookResult OrderBooks::Delete(uint16_t locate, uint64_t ref) noexcept {
  if (!valid_locate(locate)) return BookResult::kUnknownInstrument;
  Order* o = table_.Find(locate, ref);
  if (o == nullptr) return BookResult::kUnknownOrder;
  Log(*o, UndoEntry::kChanged);
  side(locate, o->side).Reduce(o->price, o->shares, true);
  table_.Erase(o);
  return BookResult::kOk;
}

BookResult OrderBooks::Replace(uint16_t locate, uint64_t orig_ref, uint64_t new_ref,
                               uint32_t shares, uint32_t price) noexcept {
  if (!valid_locate(locate)) return BookResult::kUnknownInstrument;
  Order* o = table_.Find(locate, orig_ref);
  if (o == nullptr) return BookResult::kUnknownOrder;
  if (shares == 0 || (new_ref != orig_ref && table_.Find(locate, new_ref) != nullptr)) {
    return BookResult::kInvalid;
  }
  const Order before = *o;
  const Side s = o->side;
  side(locate, s).Reduce(o->price, o->shares, true);
  table_.Erase(o);
  if (!side(locate, s).Add(price, shares)) {
    Log(before, UndoEntry::kChanged);  // The original order is gone all the same.
    return BookResult::kFull;
  }
  table_.Insert(Order{new_ref, price, shares, locate, s});
  Log(before, UndoEntry::kReplaced, new_ref);
  return BookResult::kOk;
}

void OrderBooks::Remove(uint16_t locate, uint64_t ref) noexcept {
  Order* o = table_.Find(locate, ref);
  if (o == nullptr) return;
  side(locate, o->side).Reduce(o->price, o->shares, true);
  table_.Erase(o);
}

void OrderBooks::Restore(const Order& before) noexcept {
  Order* o = table_.Find(before.locate, before.ref);
  if (o != nullptr) {
    // Still live with fewer shares: give the removed shares back to the same level.
    side(before.locate, before.side).Add(before.price, before.shares - o->shares, false);
    o->shares = before.shares;
    return;
  }
  // Capacity cannot fail: the order (and its level) existed in this state before.
  (void)side(before.locate, before.side).Add(before.price, before.shares);
  table_.Insert(before);
}

void OrderBooks::Undo(std::vector<UndoEntry>& log) noexcept {
  std::vector<UndoEntry>* saved = undo_;
  undo_ = nullptr;
  for (size_t i = log.size(); i-- > 0;) {
    const UndoEntry& e = log[i];
    switch (e.kind) {
      case UndoEntry::kAdded:
        Remove(e.before.locate, e.before.ref);
        break;
      case UndoEntry::kChanged:
        Restore(e.before);
        break;
      case UndoEntry::kReplaced:
        Remove(e.before.locate, e.new_ref);
        Restore(e.before);
        break;
    }
  }
  log.clear();
  undo_ = saved;
}

void OrderBooks::Clear() noexcept {
  table_.Clear();
  for (BookSide& s : sides_) s.Clear();
}

}  // namespace qsig::feeds::internal
