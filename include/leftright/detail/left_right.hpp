// SPDX-License-Identifier: Apache-2.0
// leftright: the generic left-right primitive. Two copies of a T, an atomic pointer to the one
// readers use, an operation log, and publish(). Any deterministic data structure can sit on it.
//
// ================================ The protocol ================================
//
// Roles. One writer (lr_writer) owns the operation log and is the only thread that changes
// either copy. Any number of readers (lr_reader), each with its own slot in the registry
// (epoch.hpp), read the copy that read_ptr names. Readers never write a line another thread
// writes; the writer never waits while holding a lock.
//
// Shared state (lr_core): copies[0], copies[1] (each in an allocation of its own, aligned to cache
// lines), read_ptr (its own line), the registry of reader slots, each slot's epoch word
// (epoch.hpp: a count of live guards and a generation; inside = count not zero), and the held
// copies (case C7). Readers reach a copy through read_ptr alone, never through copies[]: the
// pointer they load is the copy's address, so holding the copies on the heap (which lets a
// publish_within() give one away) costs the read path nothing.
//
// Reader enter:  e = own word; [R1] word = e + one generation + one guard; [R2] p = read_ptr;
//                if p carries the fence tag (adaptive cores, case C8): [R4] word = the same value
//                again, by a seq_cst exchange; [R5] p = read_ptr; read *p ...
// Reader leave:  [R3] word -= one guard.
// Nested guards on one reader (word already inside) reuse the pinned p and add one guard; each
// takes its own off. Whatever order the guards end in, the reader is inside until the last one
// does, and the generation only moves at an entry from outside.
//
// Writer publish(), with W the copy readers do not use, R the one they do:
//   1. wait: for every (slot, e) recorded at the previous swap, [W4] wait until the slot has left
//      that read: outside, or a newer generation (epoch_word::left_since). Those are the only
//      readers that can be inside W (see case analysis below).
//   2. apply to W, by move, the batch R received last time (it is now owed to W), then, by
//      copy, the new batch; W now equals R plus the new batch. The copy's metadata
//      (Traits::meta_type, beside the version in the copy) goes the same way: the last batch's
//      set_meta, then the new one's, so a reader sees a batch's label with its entries only.
//   3. [W1] read_ptr = &W (the swap); with asymmetric readers, [W2] membarrier (on an adaptive
//      core, not when this swap and the last both asked readers to fence: case C8; not when
//      every registered reader is the publishing thread's own: case C9).
//   4. [G3]+[W3] walk the registry and record every slot that is inside, with its word.
//   The new batch stays in the log, owed to R, which becomes the write copy next time.
// try_publish() runs step 1 as a check ([W5]) and returns false instead of waiting.
// try_settle() is a try_publish() that makes no new version: step 1 as a check, step 2 with the
// replayed batch only (W then equals R, version and metadata too), steps 3 and 4. Readers move
// back to the copy they left at the last publish and see the same state; the cases below hold as
// for any swap. What it buys is locality: a map published every few operations otherwise has
// its readers alternate between the copies, and the caches hold both copies' hot lines.
// publish_within(max_wait) runs step 1 for at most max_wait; if recorded readers are still inside
// then, it detaches W (case C7): W goes to the held list with those readers (slot and word), a
// fresh W is made as a copy of R, the log's replay is dropped (the fresh W already equals R),
// and steps 2 to 4 follow on the fresh W. Every publish first frees the held copies whose
// readers have all left ([W6]).
//
// Invariants.
//   I1. Between two swaps, the writer changes only W.
//   I2. A reader that may be inside W when the writer starts step 2 is in the recorded set, and
//       the writer has seen its epoch move: it has left (and its reads happen-before [W4]).
//   I3. After every publish, W (next time's write copy) = R + the log; so replaying the log
//       makes the copies equal, and with Traits::verify_copies the writer checks it.
//
// Why I2 holds: the numbered race cases. Let swap k make W the read copy, swap k+1 retire it,
// and the writer write W again in publish k+2. A reader inside W during that write must have
// loaded read_ptr == &W, i.e. its [R2] read swap k's value, before swap k+1 replaced it.
//   C1. Its [R1] is seen by [W3] of publish k+1: recorded inside, and step 1 of publish k+2
//       waits until it leaves that read. Only its last [R3] brings the count to zero - its
//       reads are done - and only its next entry from outside, which loads read_ptr again (by
//       then naming R; case C2 for that read), changes the generation.
//   C2. [W3] misses its [R1] (reads an older, outside value). seq_cst mode: [R1], [R2], [W1], [W3]
//       are seq_cst; [W3] not seeing [R1] puts [W3] before [R1] in the single total order, so
//       [W1] < [W3] < [R1] < [R2], and [R2] reads swap k+1's pointer or a later one: it is not
//       inside W. Asymmetric mode: membarrier [W2] runs a full barrier on the reader's CPU
//       at some point B. If [R1] came before B, [W3] sees it (C1). If after, [R2] is after B,
//       which is after [W1] became visible, so again [R2] reads the new pointer.
//   C3. The reader's slot was not yet in the list [G3] walked: it was registered [G2] after the
//       walk began, so after [W1]; its first [R2] comes after, reads swap k+1's pointer or later.
//   C4. The slot was released and reused during the wait: the word is never reset (only its
//       fenced bit is set anew), and a release needs the old owner outside, so the writer sees
//       it has left whatever the new owner does.
//   C5. Nested guards: a read() on a reader that is already inside reuses the pinned pointer
//       and only adds one to the count; the reader is outside only when the count is zero, that
//       is when the last guard of the read ends (in whatever order they end), so it counts as
//       inside until then, in the same generation.
//   C6. The writer is destroyed while readers read: readers own the core through shared_ptr;
//       nothing writes either copy again, and the read copy stays what was published last.
//       Held copies (C7) belong to the core too, and go with it.
//   C7. The detached copy. publish_within() stops waiting for the readers still recorded after
//       max_wait and gives them W. By I2's argument, those are the only readers that can be
//       inside W; W is never written again, and it is freed only once [W6] has seen each of
//       them leave that read (its [R3] happens-before the free). The fresh W is new memory no
//       reader has a pointer to; it is published by [W1] like any write copy, so readers that
//       load it see it whole. R is untouched (the fresh W is copied from it, a read). A slow
//       reader recorded again at this swap (it is still inside) may be in R, or may not yet have
//       loaded read_ptr at all ([R1] seen, [R2] still to come: it will load this swap's pointer
//       or a later one); the writer cannot tell these apart without the reader publishing the
//       pointer it loaded and checking it again, instructions the read path does not pay. So the
//       next publish_within() holds the next write copy for it as well: a reader that stays
//       inside holds one copy per publish_within() that found it inside, each freed when it
//       leaves; a reader already holding a copy in its read is not waited for again. The held
//       list is bounded (set_held_copy_limit); at the bound, or if building the fresh copy
//       throws, publish_within() waits as publish() does, W still owed the replay, nothing lost.
//       Nothing is ever freed that a recorded reader may be in, and nothing written.
//   C8. Adaptive cores (reader_sync::automatic where membarrier works): each swap's [W1] stores
//       &W with a tag bit that asks readers to fence or not; a reader that loads a tagged
//       pointer [R2] makes its entry seq_cst ([R4], an exchange that stores its [R1] value
//       again) and loads the pointer again ([R5]), and reads the copy that load names. A swap
//       runs [W2] and an acquire [W3] unless it and the swap before it are both tagged; then
//       [W1] and [W3] are seq_cst. Take a reader inside W during publish k+2's write, having
//       loaded swap k's pointer (untagged at [R2], or tagged at [R5]) before swap k+1 replaced
//       it. If swap k+1 ran [W2], the asymmetric argument of C2 holds whatever the reader did.
//       Otherwise swaps k and k+1 are both tagged, so the reader did not enter through an
//       untagged [R2] of swap k's pointer: it entered through [R4]/[R5], seq_cst, and C2's
//       seq_cst argument holds with [R4] for [R1] and [R5] for [R2]. (An untagged pointer read
//       at [R2] comes from an untagged swap, and the swap after an untagged one always runs
//       [W2].) Which mode a swap asks for is the writer's choice (next_fencing: the publish
//       rate), but a fencing reader may take the tag off once writes have gone quiet ([R6], a
//       compare-exchange from the tagged value to the same address untagged), and readers then
//       enter without a fence. So on adaptive cores [W1] is an exchange, and "the swap before
//       it was tagged" means the value the exchange replaced still carries the tag: if a reader
//       took it off, the exchange sees so (its CAS came first in read_ptr's modification
//       order) and [W2] runs; if not, the CAS fails (it expected the value [W1] replaced).
//   C9. Solo swaps (asymmetric cores). A reader may be made for one thread (its slot's owner is
//       that thread's tag; shared_map's per-thread readers are). When the writer's last walk of
//       the registry ([W8], at the registry's count g) found every slot free or owned by the
//       publishing thread, the swap is an untagged seq_cst exchange [W1] followed by a seq_cst
//       load of the count [W8]; if it still reads g, no [W2] runs. Take a reader inside W during
//       publish k+2's write, having loaded swap k's pointer before solo swap k+1 replaced it.
//       Its slot was, at the walk: (a) the writer's own: its reads and the publishes are ordered
//       by program order (a guard held across a publish is seen inside by that publish's own
//       [W3]: case C1); (b) free, its last owner's reads over ([G6] release, [W8] acquire): so
//       the reader registered later, and a registration increments the count ([G5], seq_cst,
//       after storing the owner) and then loads read_ptr seq_cst before its first entry. If its
//       increment came at or before g, the walk saw its owner (not free); if after, then [W1]
//       and [W8] (reading g) precede the increment in the total order, hence precede that
//       load, which reads swap k+1's pointer or a later one; by coherence so do the reader's
//       [R2]s after it: not inside W. (c) Owned by another thread or by any thread: not solo.
//       A slot not yet in the list is case C3. The swap is untagged and the next non-solo swap
//       then always runs [W2] (C8's rule), so C8's argument is unchanged.
// Visibility: [W1] is a release (seq_cst) store and [R2] an acquire (or seq_cst) load, so all
// of step 2 happens-before every read through the pointer the reader loaded.
//
// Exception safety of publish(): the strong guarantee. If step 2 throws (a copy constructor,
// the hash, an allocation), W is repaired by making it a copy of R (Apply::restore where
// given: for the map, a copy into a table allocated up front, since a table Abseil failed to
// grow must never be destroyed or walked; see map_ops.hpp), the replayed batch is considered
// delivered (W = R), the new batch stays queued and the exception propagates: readers saw
// nothing, the copies are equal. This needs step 2 to leave W valid, if not equal to anything,
// whatever throws: Apply's promise. If the repair itself throws, the writer is poisoned: every
// later publish throws std::logic_error, and readers keep the last published state forever.
// Step 3 and 4 cannot throw. A publish_within() whose detachment throws (the fresh copy, the held
// list's growth) has changed nothing yet: it waits as publish() does and goes on from there.
//
// Labels (every atomic operation in the core):
//   [R0] reader loads its own epoch     relaxed   only its owner writes it
//   [R1] reader marks itself inside     seq_cst   | release + compiler barrier (asymmetric);
//        a nested guard's count is a release too. Release, not for [R2]'s sake, but because
//        a writer's [W4]/[W5] may read one of these stores instead of the [R3] before it.
//   [R2] reader loads read_ptr          seq_cst   | acquire (asymmetric); pairs with [W1]
//   [R3] reader marks itself outside    release   pairs with [W4]/[W5]: reads done before
//   [R4] fenced entry (tagged pointer)  seq_cst   exchange of [R1]'s value; as [R1] in C2 (C8)
//   [R5] reload of read_ptr             seq_cst   after [R4]; as [R2] in C2 (C8)
//   [R6] reader takes the tag off       relaxed   CAS: an RMW, so in [W1]'s release sequence (C8)
//   [R7] reader loads relax_after       relaxed   a hint: when [R6] may be tried
//   [W1] writer swaps read_ptr          seq_cst   | release (with [W2]); pairs with [R2]/[R5];
//        an exchange on adaptive cores, which reads whether [R6] took the last tag off
//   [W2] membarrier (asymmetric only)   syscall   the readers' half of their missing fence
//   [W3] writer records epochs          seq_cst   | acquire (after [W2]); pairs with [R1]/[R4]
//   [W4] writer waits for epochs        acquire   pairs with [R3]
//   [W5] try_publish's check            acquire   pairs with [R3]
//   [W6] held copy's holders checked    acquire   pairs with [R3]: reads done before the free
//   [W7] writer stores relax_after      relaxed   a hint for [R7]
//   [W8] writer checks the owners       relaxed   whether to walk; the walk: acquire, pairs with
//                                                 [G5]/[G6]; after a solo [W1]: seq_cst (C9)
//   [R8] reader checks its owner        relaxed   debug builds only: set before it got the slot
//   [G0]-[G3] registry list             see epoch.hpp
//   [G4] registration sets fenced bit   release   pairs with [W3]/[W4]/[W5], see epoch.hpp
//   [G5] registration: owner, count     relaxed + seq_cst RMW, then a seq_cst load of
//                                                 read_ptr before the first entry (C9)
//   [G6] release: owner none, count     release + seq_cst RMW (C9)
// ==============================================================================
#pragma once

#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "../traits.hpp"
#include "barrier.hpp"
#include "config.hpp"
#include "epoch.hpp"

namespace leftright {

// reader_sync, copy_check, no_meta and default_traits, what users customize: traits.hpp.

/// What a publish() that waits too long for a reader reports (see map_writer::set_stall_report):
/// a read that has not ended since an earlier publish, most often a read_guard kept too long or
/// forgotten (in a request that hangs, a cache, a coroutine frame).
struct reader_stall {
  std::size_t slot;          ///< the reader's slot: 0 for the first ever registered, 1 the next, ...
  std::uint64_t seen_at;     ///< the version whose publish found that reader inside this read
  std::chrono::nanoseconds inside_for;  ///< at least this long inside it
  std::uint64_t publishing;  ///< the version the waiting publish() will make
  std::chrono::nanoseconds waited;      ///< how long that publish() has waited so far
};

namespace detail {

/// now + d, or the clock's last time point where that would overflow (a wait bounded by
/// nanoseconds::max() is a wait without bound).
/// Compared in d's own unit (the room left, converted to it, rounds down and cannot overflow), so
/// that a duration too long for the clock's nanoseconds (milliseconds::max(), a sync_interval of
/// centuries) is the clock's end too.
template <class Rep, class Period>
std::chrono::steady_clock::time_point saturating_after(std::chrono::steady_clock::time_point now,
                                                       std::chrono::duration<Rep, Period> d) noexcept {
  using clock = std::chrono::steady_clock;
  if (d >= std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(clock::time_point::max() - now)) {
    return clock::time_point::max();
  }
  return now + std::chrono::duration_cast<clock::duration>(d);
}

/// One copy and the version it holds. Aligned so that the writer's stores to one copy's header
/// (size, capacity, ...) never share a line with the copy readers are using. The version and
/// the metadata, which every publish stores into the copy it is about to show, sit on a line of
/// their own, apart from the table's header, which every lookup reads: on the header's line
/// they made the first lookup after each swap wait for that line to come back from the
/// writer's core (a reader beside a writer publishing every operation read 5-9% faster
/// without it, bench/results/notes.md, 2026-12-07).
template <class T, class Meta = no_meta>
struct alignas(cache_line) versioned {
  T value;
  alignas(cache_line) std::uint64_t version = 0;
  [[no_unique_address]] Meta meta{};  ///< set with the batch that made this version
};

/// Traits::meta_type, or no_meta for traits that do not name one.
template <class Traits>
struct meta_of {
  using type = no_meta;
};
template <class Traits>
  requires requires { typename Traits::meta_type; }
struct meta_of<Traits> {
  using type = typename Traits::meta_type;
};

/// A copy given to the readers still inside it when a publish_within() stopped waiting for them
/// (case C7): frozen as they saw it, freed once each of them has left that read.
template <class T, class Meta>
struct held_copy {
  std::unique_ptr<versioned<T, Meta>> copy;
  /// The readers that may be inside it, with the epoch word each was recorded with.
  std::vector<std::pair<reader_slot*, std::uint64_t>> holders;
};

/// The state shared by the writer, readers, factories and guards (through shared_ptr).
template <class T, class Meta = no_meta>
struct lr_core {
  using copy_type = versioned<T, Meta>;
  template <class... Args>
  explicit lr_core(reader_sync mode, const Args&... args)
      : copies{std::unique_ptr<copy_type>(new copy_type{T(args...), 0}),
               std::unique_ptr<copy_type>(new copy_type{T(args...), 0})},
        asymmetric(resolve(mode) == reader_sync::asymmetric),
        adaptive(asymmetric && mode == reader_sync::automatic) {}

  /// The copies start as `first` and `second` at `version`, labelled `meta` (a recovered state:
  /// two equal tables, the second made by the caller's safe copy of the first).
  lr_core(reader_sync mode, std::uint64_t version, T first, T second, const Meta& meta = Meta{})
      : copies{std::unique_ptr<copy_type>(new copy_type{std::move(first), version, meta}),
               std::unique_ptr<copy_type>(new copy_type{std::move(second), version, meta})},
        asymmetric(resolve(mode) == reader_sync::asymmetric),
        adaptive(asymmetric && mode == reader_sync::automatic) {}

  /// The two live copies, each in an allocation of its own (so that a publish_within() can give
  /// one away and put a fresh one in its place). Only the writer reads or changes these
  /// pointers; readers reach a copy through read_ptr alone.
  std::unique_ptr<copy_type> copies[2];
  /// Copies held by slow readers (case C7). Writer only (on the writer's line with copies[],
  /// away from read_ptr); whatever is left when the last handle goes is freed with the core,
  /// after every reader has gone.
  std::vector<held_copy<T, Meta>> held;
  /// The address of the copy readers use, with fence_tag set while the writer asks readers to
  /// fence (adaptive cores only). Stored only by the writer, once per swap.
  alignas(cache_line) std::atomic<std::uintptr_t> read_ptr{address_of(copies[0].get())};
  /// Adaptive cores: when readers that fence may take the tag off read_ptr, writes having gone
  /// quiet (steady_clock nanoseconds; the maximum while the writer forces fencing). A hint:
  /// stored by the writer at each publish, read by fencing readers now and then.
  std::atomic<std::int64_t> relax_after{0};
  /// Fixed at construction: which barrier the readers and the writer of this instance use.
  const bool asymmetric;
  /// Fixed at construction (reader_sync::automatic where membarrier works): asymmetric while
  /// publishes are rare, readers fencing while they are frequent (case C8).
  const bool adaptive;

  /// Copies are cache-line aligned, so bit 0 of an address is free to carry the request.
  static constexpr std::uintptr_t fence_tag = 1;
  static std::uintptr_t address_of(const copy_type* c) noexcept { return reinterpret_cast<std::uintptr_t>(c); }
  static const copy_type* copy_at(std::uintptr_t v) noexcept {
    return reinterpret_cast<const copy_type*>(v & ~fence_tag);
  }
  alignas(cache_line) reader_registry registry;
};

/// The read protocol of one registered slot: the core and the slot, neither owned (lr_reader
/// owns them), two pointers copied freely, so that a caller that keeps its reader out of reach
/// (a thread-local table) can hold what a read needs one load closer. Used by the thread using
/// its lr_reader, while that reader lives and holds the slot. Mode == seq_cst compiles the
/// asymmetric branch away; otherwise the fenced bit of the slot's word (fixed at registration
/// from the core) selects it, tested with the nesting in one instruction.
template <class T, reader_sync Mode, class Meta = no_meta>
class lr_reader_ref {
  using core_type = lr_core<T, Meta>;
  using copy_type = versioned<T, Meta>;

 public:
  lr_reader_ref() = default;  ///< reads nothing (a read through it is a precondition violation)
  lr_reader_ref(core_type* core, reader_slot* slot) noexcept : core_(core), slot_(slot) {}

  /// What enter() hands the guard: the copy to read and this reader's slot.
  struct entry {
    const copy_type* copy;
    reader_slot* slot;
  };

  /// Enters a read. Wait-free: for the outermost read of an asymmetric reader, one test, two
  /// stores (the epoch word, the pinned copy) and three loads (the word, the core, its read
  /// pointer); returned by value so that the guard's fields stay in registers.
  entry enter() const noexcept {
    // A moved-from reader has no slot; reading through it is a precondition violation. Saying
    // so lets the compiler drop the guard's "moved from?" test at leave.
    if (slot_ == nullptr) __builtin_unreachable();
    reader_slot& s = *slot_;
    // [R8] relaxed: a debug check of the owner the registry stored before this thread got the slot.
    assert((s.owner.load(std::memory_order_relaxed) == slot_owner::any_thread ||
            s.owner.load(std::memory_order_relaxed) == thread_tag()) &&
           "a reader made for one thread is read through on another");
    // Loaded once, before the compiler barrier below, and passed on rather than read through
    // `this`: a ref copied out of a thread-local then stays in registers, not on the stack.
    core_type& core = *core_;
    // [R0] relaxed: only this reader ever stores its epoch word.
    const std::uint64_t e = s.epoch.load(std::memory_order_relaxed);
    if constexpr (Mode != reader_sync::seq_cst) {
      // One test: outside a read, and asymmetric (fenced clear).
      if ((e & (epoch_word::count_mask | epoch_word::fenced)) == 0) [[likely]] {
        // [R1] release + compiler barrier: the writer's membarrier [W2] supplies the hardware
        //      fence between this store and [R2] when it matters (case C2). Release (a plain
        //      store on x86) for a writer that sees this value instead of our last [R3]: since
        //      C++20 a later plain store no longer continues [R3]'s release sequence.
        s.epoch.store(e + epoch_word::enter_read, std::memory_order_release);
        std::atomic_signal_fence(std::memory_order_seq_cst);
        // [R2] acquire: pairs with [W1] so the copy's contents are visible.
        std::uintptr_t v = core.read_ptr.load(std::memory_order_acquire);
        if constexpr (Mode == reader_sync::automatic) {
          // Tag clear: v is the address as it is (no mask on this path).
          if (v & core_type::fence_tag) [[unlikely]] v = fence_and_reload(core, s, e + epoch_word::enter_read);
        }
        const copy_type* p = reinterpret_cast<const copy_type*>(v);
        s.pinned = p;
        return {p, &s};
      }
    }
    return enter_slow(core, s, e);
  }

  /// Whether a guard of this reader is alive (its thread is inside a read). Thread-safety: the
  /// thread using the reader. A default-constructed ref is never inside.
  bool inside() const noexcept {
    // [R0] relaxed: only this reader ever stores its epoch word, on this thread.
    return slot_ != nullptr && epoch_word::inside(slot_->epoch.load(std::memory_order_relaxed));
  }

  /// Leaves a read: one guard of it. The read ends when the last of its guards leaves, in
  /// whatever order they do.
  static void leave(reader_slot* s) noexcept {
    // [R0] relaxed: only this reader ever stores its epoch word.
    const std::uint64_t e = s->epoch.load(std::memory_order_relaxed);
    // [R3] release: every read of the pinned copy happens-before the writer's [W4]/[W5] load
    //      that sees this value or a later one, and so before it writes that copy again.
    s->epoch.store(e - epoch_word::guard_unit, std::memory_order_release);
  }

  reader_slot* slot() const noexcept { return slot_; }

 private:
  /// A nested read (case C5), or the outermost read of a seq_cst reader. Inlined, so that the
  /// caller's guard is not made to live in memory by a call that fills it in.
  [[gnu::always_inline]] static entry enter_slow(core_type& core, reader_slot& s, std::uint64_t e) noexcept {
    if (epoch_word::inside(e)) {
      // Nested in a read on this reader: the same snapshot, one guard more. The count only
      // grows while the reader is inside, which the writer already treats as the same read.
      if (!epoch_word::can_nest(e)) [[unlikely]] too_deep();
      // release: staying inside needs no ordering, but a writer may see this value instead
      //          of an earlier [R3] (as for [R1]).
      s.epoch.store(e + epoch_word::guard_unit, std::memory_order_release);
      return {static_cast<const copy_type*>(s.pinned), &s};
    }
    // [R1] seq_cst: marks us inside before [R2]; with [W1]/[W3] seq_cst too, the writer
    //      either sees us inside or we see its new pointer (case C2). StoreLoad:
    //      acquire/release cannot give it.
    s.epoch.store(e + epoch_word::enter_read, std::memory_order_seq_cst);
    // [R2] seq_cst: see [R1]; also acquire, pairing with [W1] for the copy's contents.
    const copy_type* p = core_type::copy_at(core.read_ptr.load(std::memory_order_seq_cst));
    s.pinned = p;
    return {p, &s};
  }

  /// An adaptive core's writer asked for a fence (the pointer's tag, case C8): the reader
  /// orders its entry [R1] before a new pointer load as a seq_cst reader does. Returns the
  /// address of the copy to read, untagged.
  [[gnu::noinline]] static std::uintptr_t fence_and_reload(core_type& core, reader_slot& s,
                                                           std::uint64_t inside) noexcept {
    // [R4] seq_cst exchange, storing again the value [R1] stored: a locked instruction, and a
    //      seq_cst store in the total order with [W1]/[W3] (case C8, as [R1] in case C2).
    s.epoch.exchange(inside, std::memory_order_seq_cst);
    // [R5] seq_cst: after [R4] in the total order; also acquire, pairing with [W1].
    const std::uintptr_t v = core.read_ptr.load(std::memory_order_seq_cst);
    if ((++s.fenced_entries % relax_check_every) == 0) relax_if_quiet(core, v);
    return v & ~core_type::fence_tag;
  }
  /// After a burst of publishes readers would fence until the next publish, for hours if none
  /// comes: a fencing reader checks the clock every relax_check_every entries and, past the
  /// writer's relax_after, takes the tag off the pointer itself ([R6]). The writer's next swap
  /// sees that ([W1] is an exchange on adaptive cores) and runs [W2] (case C8).
  static constexpr std::uint32_t relax_check_every = 1024;
  static void relax_if_quiet(core_type& core, std::uintptr_t v) noexcept {
    if ((v & core_type::fence_tag) == 0) return;
    const std::int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
    // [R7] relaxed: a hint (when to relax); the CAS below is what the writer sees.
    if (now <= core.relax_after.load(std::memory_order_relaxed)) return;
    // [R6] relaxed compare-exchange, once (wait-free): an RMW, so it continues [W1]'s release
    //      sequence (readers that load its value see the copy as [W1] published it); it fails
    //      if the writer swapped meanwhile.
    core.read_ptr.compare_exchange_strong(v, v & ~core_type::fence_tag, std::memory_order_relaxed,
                                          std::memory_order_relaxed);
  }

  [[noreturn]] static void too_deep() noexcept {
    std::fputs("leftright: more than 2^29-1 read guards alive on one reader\n", stderr);
    std::abort();
  }

  core_type* core_ = nullptr;
  reader_slot* slot_ = nullptr;
};

/// A reader's handle: one registered slot, and a share of the core. Used by one thread at a time.
template <class T, reader_sync Mode, class Meta = no_meta>
class lr_reader {
  using core_type = lr_core<T, Meta>;

 public:
  using ref = lr_reader_ref<T, Mode, Meta>;
  using entry = typename ref::entry;

  /// owner: slot_owner::any_thread, or thread_tag() when only the calling thread will ever read
  /// through this reader (case C9: its own publishes may then skip the readers' barrier).
  explicit lr_reader(std::shared_ptr<core_type> core, std::uint64_t owner = slot_owner::any_thread)
      : core_(std::move(core)), slot_(core_->registry.acquire(core_->asymmetric, owner)) {
    // [G5] seq_cst load, after the registration's seq_cst increment and before the first [R2]: a
    //      writer whose check after its swap ([W8]) missed the increment precedes it in the total
    //      order, and so does that swap's [W1]: this load reads that pointer or a later one, and
    //      by coherence so does every later [R2] of this reader (case C9).
    (void)core_->read_ptr.load(std::memory_order_seq_cst);
  }
  lr_reader(const lr_reader& other) : lr_reader(other.core_) {}
  lr_reader(lr_reader&& other) noexcept
      : core_(std::move(other.core_)), slot_(std::exchange(other.slot_, nullptr)) {}
  lr_reader& operator=(lr_reader other) noexcept {
    swap(other);
    return *this;
  }
  ~lr_reader() {
    if (slot_ == nullptr) return;
    // [R0] relaxed: only this reader stores its epoch; inside would mean a guard is still alive.
    assert(!epoch_word::inside(slot_->epoch.load(std::memory_order_relaxed)) &&
           "a read guard outlived its reader (of a shared_map or cache: its map)");
    core_->registry.release(slot_);
  }
  void swap(lr_reader& other) noexcept {
    core_.swap(other.core_);
    std::swap(slot_, other.slot_);
  }

  entry enter() const noexcept { return get_ref().enter(); }
  static void leave(reader_slot* s) noexcept { ref::leave(s); }
  reader_slot* slot() const noexcept { return slot_; }
  const std::shared_ptr<core_type>& core() const noexcept { return core_; }
  /// The read protocol of this reader's slot, valid while this reader lives and holds it.
  ref get_ref() const noexcept { return ref(core_.get(), slot_); }

 private:
  std::shared_ptr<core_type> core_;
  reader_slot* slot_;
};

/// When an adaptive core's readers fence (case C8). A membarrier costs the writer about 0.25 us
/// with idle cores and 10 us with busy ones, and interrupts every core running a thread of the
/// process; a fence costs a reader a locked instruction (some ns) per read. So readers fence
/// while publishes come often (`above` or more per `window`, on average over the window that just
/// ended), and stop once they come rarely (`below` or fewer); between the two, the mode stays.
struct fencing_rate {
  static constexpr std::chrono::milliseconds window{1};
  static constexpr std::int64_t above = 8;
  static constexpr std::int64_t below = 2;
  /// How long after a publish readers that fence may stop, if no other publish came.
  static constexpr std::chrono::milliseconds quiet{2};
  /// While readers fence, the writer reads the clock at one publish in this many.
  static constexpr std::uint32_t clock_every = 4;
  /// The mode after `swaps` publishes in `elapsed` (at least one window), from `fencing`.
  static bool after(std::uint64_t swaps, std::chrono::nanoseconds elapsed, bool fencing) noexcept {
    const auto n = static_cast<std::int64_t>(swaps);
    const std::int64_t w = std::chrono::nanoseconds(window).count();
    const std::int64_t t = elapsed.count();
    if (n * w >= above * t) return true;
    if (n * w <= below * t) return false;
    return fencing;
  }
};

/// How operations are applied to a copy (the required half of lr_writer's Apply contract, below):
/// first by copy, then, to the other copy, by move.
template <class Apply, class T, class Op>
concept absorbs = requires(T& t, Op& op) {
  Apply::first(t, op);
  Apply::second(t, std::move(op));
};

/// A hook of lr_writer::publish_with(): before_apply and before_swap see the batch and its
/// version; abort() undoes before_apply and must not throw.
template <class H, class Op>
concept publish_hook = requires(H& h, std::uint64_t version, const std::vector<Op>& ops) {
  h.before_apply(version, ops);
  h.before_swap(version, ops);
  { h.abort() } noexcept;
};

/// The writer. Apply must provide
///   static void first(T&, Op&);         // the first application, by copy (may note results
///                                       // in the op for the second, e.g. a node it made)
///   static void second(T&, Op&&);       // the second application, by move
/// and both must give the same result on equal T's (operations are deterministic); if either
/// throws, it must leave T valid (destructible and assignable), if not equal to anything. It may
/// provide static void restore(T& dst, const T& src), a copy assignment that leaves dst valid
/// if it throws (used to repair the write copy after a failed publish; default dst = src),
/// static bool equal(const T&, const T&) for Traits::verify_copies, and, to have
/// emplace_reusing() reuse the storage of spent keys, static constexpr bool recycles = true,
/// a type spare_key and static void salvage(Op&, std::vector<spare_key>&) (called on each op
/// after its second application), and, to have a large batch prefetch, static std::size_t
/// prefetch_ahead(const T&, std::size_t n) (how many ops ahead, 0: none) and static void
/// prefetch_op(const T&, const Op&). The required half is the concept absorbs.
template <class T, class Op, absorbs<T, Op> Apply, map_traits Traits>
class lr_writer {
 public:
  using meta_type = typename meta_of<Traits>::type;
  using core_type = lr_core<T, meta_type>;
  using copy_type = versioned<T, meta_type>;

  explicit lr_writer(std::shared_ptr<core_type> core) : core_(std::move(core)) {}
  lr_writer(lr_writer&&) noexcept = default;
  lr_writer& operator=(lr_writer&&) noexcept = default;
  lr_writer(const lr_writer&) = delete;
  lr_writer& operator=(const lr_writer&) = delete;

  /// Queues one operation, built in place from x (one of Op's alternatives).
  template <class X>
  void append(X&& x) {
    pending_.emplace_back(std::in_place_type<std::decay_t<X>>, std::forward<X>(x));
  }
  /// Queues one operation of type X (one of Op's alternatives), built in place from args.
  template <class X, class... Args>
  void emplace(Args&&... args) {
    pending_.emplace_back(std::in_place_type<X>, std::forward<Args>(args)...);
  }
  /// emplace<X>(key, value), but where Apply::recycles, the key is copied into the storage of a
  /// key kept from an operation applied twice before (Apply::salvage), and moved into the op: a
  /// key that owns memory then costs no allocation. The copy is made in place, in the spare
  /// itself: one move per key, not two (a string's move is an out-of-line call).
  template <class X, class K, class V>
  void emplace_reusing(const K& key, V&& value) {
    if constexpr (recycles) {
      if (!spare_.empty()) {
        auto& k = spare_.back();
        k = key;  // throws: nothing queued, the spare keeps its storage
        // Throws (growth, or Value's constructor): nothing queued; k may have been moved from,
        // which leaves a spare without storage, still a valid key.
        pending_.emplace_back(std::in_place_type<X>, std::move(k), std::forward<V>(value));
        spare_.pop_back();
        return;
      }
    }
    pending_.emplace_back(std::in_place_type<X>, key, std::forward<V>(value));
  }
  std::size_t pending() const noexcept { return pending_.size(); }
  /// The queued operations, oldest first (for the writer's reads of its own writes).
  const std::vector<Op>& queued() const noexcept { return pending_; }
  void discard() noexcept {
    pending_.clear();
    pending_meta_.reset();
  }
  /// Queues new metadata, published with the next batch (the last one queued wins).
  void set_meta(meta_type m) { pending_meta_.emplace(std::move(m)); }
  /// The metadata the next publish will make visible (queued, else published).
  const meta_type& meta() const noexcept { return pending_meta_ ? *pending_meta_ : published_meta(); }
  /// The metadata queued for the next publish, or nullptr if none is (what a publish hook logs).
  const meta_type* queued_meta() const noexcept { return pending_meta_ ? &*pending_meta_ : nullptr; }
  /// The metadata of the published state (what a checkpoint writes out).
  const meta_type& published_meta() const noexcept { return core_->copies[write_ ^ 1]->meta; }

  std::uint64_t publish() { return publish_with(no_hook{}); }
  bool try_publish() { return try_publish_with(no_hook{}); }

  /// Whether readers fence on entry now: always with seq_cst readers, never with asymmetric
  /// ones, and on an adaptive core as the last swap asked (then a publish makes no system call).
  bool readers_fence() const noexcept {
    // relaxed: a report; readers may have taken the tag off since the last swap ([R6]).
    return !core_->asymmetric || (core_->read_ptr.load(std::memory_order_relaxed) & core_type::fence_tag) != 0;
  }
  /// Adaptive cores: from the next swap on, readers fence (true) or not (false) whatever the
  /// publish rate; nullopt goes back to the rate's choice. No effect on other cores.
  void force_reader_fencing(std::optional<bool> fence) noexcept { fencing_override_ = fence; }

  /// Moves the readers back to the copy the last publish retired, without a new version, if no
  /// reader is still inside that copy: steps 1 (as a check), 2 (the owed batch only), 3 and 4.
  /// False, with nothing changed, if a reader is inside or nothing was published since the
  /// last settle. Exceptions: as publish()'s step 2 (nothing visible changes).
  bool try_settle() {
    check_usable();
    if (settled_) return false;
    release_held_copies();
    if (!readers_gone()) return false;
    settle_in();
    return true;
  }

  /// publish(), calling the hook's three steps (the durable map writes its log there):
  ///   hook.before_apply(version, ops)  once no reader is left in the write copy, before
  ///                                    anything is applied to it. If it throws, nothing
  ///                                    changed: the publish fails, the batch stays queued.
  ///   hook.before_swap(version, ops)   once the batch is applied to the write copy, before
  ///                                    readers can see it.
  ///   hook.abort() noexcept            if applying, or before_swap, threw after before_apply
  ///                                    returned: the publish fails as if applying had thrown
  ///                                    (nothing published, the batch stays queued), and the
  ///                                    hook undoes what before_apply did.
  template <publish_hook<Op> Hook>
  std::uint64_t publish_with(Hook&& hook) {
    check_usable();
    release_held_copies();
    wait_for_readers();
    return swap_in(hook);
  }
  template <publish_hook<Op> Hook>
  bool try_publish_with(Hook&& hook) {
    check_usable();
    release_held_copies();
    if (!readers_gone()) return false;
    swap_in(hook);
    return true;
  }

  std::uint64_t publish_within(std::chrono::nanoseconds max_wait) { return publish_within_with(no_hook{}, max_wait); }

  /// publish_with(hook), but waits at most max_wait for the readers that may be inside the write
  /// copy. Past that, the write copy is given to the readers still inside it (held, frozen, until
  /// they leave: case C7) and a fresh write copy is made from the read copy, in O(size), before
  /// the hook's before_apply. Falls back to waiting as publish_with() does, having changed
  /// nothing, if the held copies are at their limit (set_held_copy_limit), if making the fresh
  /// copy throws (it is then lost, and so is the exception), or after recording the readers
  /// failed to allocate (lost_track_).
  template <publish_hook<Op> Hook>
  std::uint64_t publish_within_with(Hook&& hook, std::chrono::nanoseconds max_wait) {
    check_usable();
    release_held_copies();
    if (lost_track_) {
      wait_for_all();
    } else if (!wait_for_readers_within(max_wait) && !detach_write_copy()) {
      wait_for_readers();
    }
    return swap_in(hook);
  }

  /// Copies held by slow readers and not yet freed (case C7). Cost: none.
  std::size_t held_copies() const noexcept { return core_ ? core_->held.size() : 0; }
  /// Frees every held copy whose readers have all left their reads; returns how many are still
  /// held. Every publish calls it first. Cost: a load of each holder's epoch word, and the
  /// destruction of what is freed.
  std::size_t release_held_copies() noexcept {
    if (!core_) return 0;
    std::erase_if(core_->held, [](held_copy<T, meta_type>& h) {
      std::erase_if(h.holders, [](const auto& x) {
        // [W6] acquire: pairs with the holder's [R3]. Seeing it has left, every read it made of
        //      the held copy happens-before the copy's destruction here.
        return epoch_word::left_since(x.first->epoch.load(std::memory_order_acquire), x.second);
      });
      return h.holders.empty();
    });
    return core_->held.size();
  }
  /// At most this many copies held at once (default held_copy_limit_default); a publish_within()
  /// that would hold one more waits instead, as publish() does.
  void set_held_copy_limit(std::size_t n) noexcept { held_limit_ = n; }
  static constexpr std::size_t held_copy_limit_default = 8;

  /// The version readers get from a read that starts now.
  std::uint64_t version() const noexcept { return core_->copies[write_ ^ 1]->version; }
  /// Makes the next successful publish produce version v rather than version() + 1, where v is
  /// larger (a replica that jumps forward to a newer snapshot); v <= version() + 1 changes
  /// nothing. Versions still never go down.
  void skip_to(std::uint64_t v) noexcept { skip_to_ = v; }
  bool poisoned() const noexcept { return poisoned_; }
  const std::shared_ptr<core_type>& core() const noexcept { return core_; }
  /// Swaps made without a membarrier because every registered reader was the publishing
  /// thread's own or none (case C9).
  std::uint64_t solo_swaps() const noexcept { return solo_swaps_; }

  /// See map_writer::set_stall_report.
  void set_stall_report(std::chrono::nanoseconds after, std::function<void(const reader_stall&)> report) {
    stall_after_ = after;
    stall_report_ = std::move(report);
  }

  /// The published state, for the writer's own reads (no reader protocol needed: only the
  /// writer changes the copies, and never the read copy).
  const T& published() const noexcept { return core_->copies[write_ ^ 1]->value; }

 private:
  void check_usable() const {
    if (!core_) throw std::logic_error("leftright: use of a moved-from writer");
    if (poisoned_) {
      throw std::logic_error(
          "leftright: the writer is poisoned (a failed publish could not restore the write copy); "
          "readers keep the last published state");
    }
  }

  /// Times one publish's wait for readers, reading the clock only once the wait sleeps.
  class stall_watch {
   public:
    explicit stall_watch(const lr_writer& w) : w_(w) {}
    void check(const reader_slot& s) {
      if (w_.stall_after_.count() <= 0) return;
      const auto now = std::chrono::steady_clock::now();
      if (started_ == std::chrono::steady_clock::time_point{}) {
        started_ = now;
        next_ = saturating_after(now, w_.stall_after_);
        return;
      }
      if (now < next_) return;
      next_ = saturating_after(now, w_.stall_after_);
      w_.report_stall(s, now - started_);
    }

   private:
    const lr_writer& w_;
    std::chrono::steady_clock::time_point started_{}, next_{};
  };

  /// Step 1: wait for the readers recorded at the last swap.
  void wait_for_readers() {
    if (lost_track_) {
      wait_for_all();
      return;
    }
    stall_watch watch(*this);
    for (const auto& [slot, seen] : waiting_) wait_until_left(*slot, seen, watch);
    waiting_.clear();
  }

  /// The fallback when recording failed to allocate: wait for every reader inside now, which
  /// includes every reader inside at the last swap (conservative, and allocation-free).
  void wait_for_all() {
    stall_watch watch(*this);
    core_->registry.for_each([&](reader_slot& s) {
      // [W4] acquire: pairs with [R3] as above.
      const std::uint64_t seen = s.epoch.load(std::memory_order_acquire);
      if (epoch_word::inside(seen)) wait_until_left(s, seen, watch);
    });
    lost_track_ = false;
    waiting_.clear();
  }

  /// Step 1 with a bound: waits until every recorded reader has left, or until max_wait has
  /// passed; true if they all left. Drops the ones that left. A reader that already holds a
  /// copy in the same read (it was found slow before) is not waited for again.
  bool wait_for_readers_within(std::chrono::nanoseconds max_wait) {
    const auto deadline = saturating_after(std::chrono::steady_clock::now(), max_wait);
    bool timed_out = false;
    std::erase_if(waiting_, [&](const auto& x) {
      if (timed_out || holds_a_copy(*x.first, x.second)) {
        // [W4] acquire: pairs with [R3], as in wait_until_left.
        return epoch_word::left_since(x.first->epoch.load(std::memory_order_acquire), x.second);
      }
      backoff b;
      // [W4] acquire: pairs with the reader's [R3]; its reads happen-before our writes.
      while (!epoch_word::left_since(x.first->epoch.load(std::memory_order_acquire), x.second)) {
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) {
          timed_out = true;
          return false;
        }
        b.pause_at_most(deadline - now);
      }
      return true;
    });
    return waiting_.empty();
  }

  /// Whether slot s, in the read it was seen in with word `seen`, already holds a copy.
  bool holds_a_copy(const reader_slot& s, std::uint64_t seen) const noexcept {
    for (const held_copy<T, meta_type>& h : core_->held) {
      for (const auto& [slot, word] : h.holders) {
        if (slot == &s && !epoch_word::left_since(seen, word)) return true;
      }
    }
    return false;
  }

  /// Case C7: gives the write copy to the readers still recorded (waiting_) and puts in its place
  /// a fresh copy of the read copy, which owes nothing (the log's replay is dropped). False, with
  /// nothing changed, at the held-copy limit or if anything here throws.
  bool detach_write_copy() noexcept {
    if (core_->held.size() >= held_limit_) return false;
    try {
      core_->held.reserve(core_->held.size() + 1);
      std::vector<std::pair<reader_slot*, std::uint64_t>> holders(waiting_);
      const copy_type& r = *core_->copies[write_ ^ 1];
      std::unique_ptr<copy_type> fresh(new copy_type{copy_of(r.value), r.version, r.meta});
      // Nothing below throws: room reserved, and held_copy's move is noexcept.
      core_->held.push_back(held_copy<T, meta_type>{std::move(core_->copies[write_]), std::move(holders)});
      core_->copies[write_] = std::move(fresh);
    } catch (...) {
      return false;
    }
    waiting_.clear();
    replay_.clear();
    replay_meta_.reset();
    return true;
  }

  /// A copy of t, made the safe way where Apply has one (see map_ops.hpp: copy).
  static T copy_of(const T& t) {
    if constexpr (requires { Apply::copy(t); }) {
      return Apply::copy(t);
    } else {
      return T(t);
    }
  }

  /// Waits until slot s, seen with word `seen`, has left that read; once the wait has gone on
  /// for stall_after_, reports it (and again every stall_after_ while it lasts).
  void wait_until_left(reader_slot& s, std::uint64_t seen, stall_watch& watch) {
    backoff b;
    // [W4] acquire: pairs with the reader's [R3]; its reads happen-before our writes.
    while (!epoch_word::left_since(s.epoch.load(std::memory_order_acquire), seen)) {
      b.pause();
      if (b.sleeping()) watch.check(s);
    }
  }

  /// Builds the reader_stall for slot s and hands it to the report (or prints it).
  void report_stall(const reader_slot& s, std::chrono::nanoseconds waited) const {
    std::size_t position = 0, count = 0;  // the list runs newest first
    core_->registry.for_each([&](const reader_slot& x) {
      if (&x == &s) position = count;
      ++count;
    });
    const reader_stall info{count - 1 - position, recorded_version_,
                            std::chrono::steady_clock::now() - recorded_at_, version() + 1, waited};
    if (stall_report_) {
      stall_report_(info);  // may throw: publish() then throws it, having changed nothing
      return;
    }
    std::fprintf(stderr,
                 "leftright: publish() of version %llu has waited %.1f s for reader slot %zu, inside one "
                 "read since the publish of version %llu (%.1f s ago): a read_guard kept too long or "
                 "forgotten? (map_writer::set_stall_report)\n",
                 static_cast<unsigned long long>(info.publishing), std::chrono::duration<double>(waited).count(),
                 info.slot, static_cast<unsigned long long>(info.seen_at),
                 std::chrono::duration<double>(info.inside_for).count());
  }

  /// apply(t, op) for each op in order. Where Apply can prefetch (Apply::prefetch_ahead(t, n)
  /// says how far, 0 for not at all), each op's lines in t start loading that many ops before its
  /// turn: a batch's ops touch unrelated lines, and on a table larger than the caches the core
  /// alone overlaps few of their misses, each lookup being followed by its store.
  template <class F>
  static void apply_each(T& t, std::vector<Op>& ops, F&& apply) {
    if constexpr (requires(const T& c, const Op& o) {
                    { Apply::prefetch_ahead(c, std::size_t{}) } -> std::convertible_to<std::size_t>;
                    Apply::prefetch_op(c, o);
                  }) {
      const std::size_t n = ops.size();
      if (const std::size_t d = Apply::prefetch_ahead(t, n); d != 0) {
        for (std::size_t i = 0; i < std::min(n, d); ++i) Apply::prefetch_op(t, ops[i]);
        for (std::size_t i = 0; i < n; ++i) {
          if (i + d < n) Apply::prefetch_op(t, ops[i + d]);
          apply(t, ops[i]);
        }
        return;
      }
    }
    for (Op& op : ops) apply(t, op);
  }

  /// A batch too small for apply_each's prefetching, on a table large enough for it: its
  /// operations' lines start loading in both copies at once, the write copy's (applied now) and
  /// the read copy's (which receives the batch at the next settle or publish). A lone write then
  /// waits for its two tables' misses together, not in turn. The owed batch was prefetched into
  /// the write copy this way at the last publish, when it was the read copy.
  void prefetch_small_batch(const T& w, const T& r) const noexcept {
    if constexpr (requires(const T& c, const Op& o) {
                    { Apply::prefetch_ahead(c, std::size_t{}) } -> std::convertible_to<std::size_t>;
                    Apply::prefetch_op(c, o);
                  }) {
      if (Apply::prefetch_ahead(w, std::numeric_limits<std::size_t>::max()) == 0) return;  // a small table
      if (Apply::prefetch_ahead(w, pending_.size()) == 0) {
        for (const Op& op : pending_) {
          Apply::prefetch_op(w, op);
          Apply::prefetch_op(r, op);
        }
      }
    }
  }

  /// Step 1 as a check: true if no recorded reader is still inside. Drops the ones that left.
  bool readers_gone() {
    bool gone = true;
    if (lost_track_) {
      core_->registry.for_each([&](reader_slot& s) {
        // [W5] acquire: pairs with [R3]; a reader seen outside has finished its reads.
        if (epoch_word::inside(s.epoch.load(std::memory_order_acquire))) gone = false;
      });
      if (gone) lost_track_ = false;
      return gone;
    }
    std::erase_if(waiting_, [](const auto& w) {
      // [W5] acquire: pairs with [R3]; once moved, that reader's reads happened-before.
      return epoch_word::left_since(w.first->epoch.load(std::memory_order_acquire), w.second);
    });
    return waiting_.empty();
  }

  struct no_hook {
    void before_apply(std::uint64_t, const std::vector<Op>&) const noexcept {}
    void before_swap(std::uint64_t, const std::vector<Op>&) const noexcept {}
    void abort() const noexcept {}
  };

  /// Steps 2 to 4. Precondition: no reader is inside the write copy.
  template <class Hook>
  std::uint64_t swap_in(Hook& hook) {
    copy_type& w = *core_->copies[write_];
    const copy_type& r = *core_->copies[write_ ^ 1];
    const std::vector<Op>& batch = pending_;
    const std::uint64_t next = std::max(r.version + 1, skip_to_);
    hook.before_apply(next, batch);  // throws: nothing changed yet
    prefetch_small_batch(w.value, r.value);
    try {
      replay_owed(w, r);
      apply_each(w.value, pending_, [](T& t, Op& op) { Apply::first(t, op); });
      if (pending_meta_) w.meta = *pending_meta_;
      hook.before_swap(next, batch);
    } catch (...) {
      hook.abort();
      repair(w, r);
      throw;
    }
    w.version = next;
    skip_to_ = 0;
    replay_.swap(pending_);  // the new batch is now owed to the retired copy; pending_ is empty
    replay_meta_ = std::move(pending_meta_);  // and its metadata, if it set any
    pending_meta_.reset();
    swap_to(w, /*publishing=*/true);
    settled_ = false;
    return w.version;
  }

  /// try_settle()'s steps 2 to 4. Precondition: no reader is inside the write copy.
  void settle_in() {
    copy_type& w = *core_->copies[write_];
    const copy_type& r = *core_->copies[write_ ^ 1];
    try {
      replay_owed(w, r);
    } catch (...) {
      repair(w, r);
      throw;
    }
    w.version = r.version;  // the same state: no new version
    swap_to(w, /*publishing=*/false);
    settled_ = true;
  }

  /// The first half of step 2: the write copy receives, by move, what the read copy received at
  /// the last publish (its operations and metadata), and is then equal to it.
  void replay_owed(copy_type& w, const copy_type& r) {
    apply_each(w.value, replay_, [&](T& t, Op& op) {
      Apply::second(t, std::move(op));
      if constexpr (recycles) {
        if (spare_.size() < spare_cap) Apply::salvage(op, spare_);
      }
    });
    verify(w.value, r.value, replay_.size());
    replay_.clear();
    // Keep the log's memory proportional to the batches in flight: a one-off huge batch
    // (a bulk load) must not pin its buffer for the life of the map.
    if (replay_.capacity() > 2 * std::max<std::size_t>(pending_.size(), 4096)) replay_.shrink_to_fit();
    if (replay_meta_) {
      w.meta = std::move(*replay_meta_);
      replay_meta_.reset();
    }
  }

  /// After step 2 threw: the write copy is made equal to the read copy again, so that the replay
  /// counts as delivered (or, if even that throws, the writer is poisoned).
  void repair(copy_type& w, const copy_type& r) noexcept {
    replay_.clear();
    replay_meta_.reset();
    try {
      restore(w.value, r.value);
      w.meta = r.meta;
    } catch (...) {
      poisoned_ = true;
    }
  }

  /// Steps 3 and 4: readers move to w, and the writer records who may still be in the other copy.
  /// A settle's swap (publishing false) keeps the readers' mode and is not counted in the rate.
  void swap_to(const copy_type& w, bool publishing) noexcept {
    const std::uintptr_t a = core_type::address_of(&w);
    if (core_->asymmetric && solo_candidate()) return solo_swap_to(a);
    if (core_->adaptive) return adaptive_swap_to(a, publishing);
    const bool barrier = core_->asymmetric;
    const std::uintptr_t v = a;
    if (barrier) {
      // [W1] release: pairs with the readers' acquire [R2]: step 2 is visible through &w.
      core_->read_ptr.store(v, std::memory_order_release);
      heavy_barrier();  // [W2]: orders [W1] before [W3] against every reader's [R1]/[R2].
    } else {
      // [W1] seq_cst: with [R1] (or [R4]), [R2] (or [R5]), [W3] in one total order (cases C2,
      //      C8). Also a release.
      core_->read_ptr.store(v, std::memory_order_seq_cst);
    }
    write_ ^= 1;
    record_readers(barrier);
  }

  /// Whether every registered slot was free or this thread's own at the last look (case C9).
  /// The look is a walk of the registry, taken again only when a reader registered or released
  /// since. Cost otherwise: a load of the registry's count and, where one thread owns every
  /// live slot, thread_tag().
  bool solo_candidate() noexcept {
    // [W8] relaxed: only decides whether to walk; the walk and the check after [W1] decide.
    if (core_->registry.owners_generation(std::memory_order_relaxed) != solo_gen_) {
      sole_owner_ = core_->registry.sole_owner(&solo_gen_);
    }
    if (sole_owner_ == slot_owner::any_thread) return false;
    return sole_owner_ == slot_owner::none || sole_owner_ == thread_tag();
  }

  /// A swap of an asymmetric core while every slot was free or this thread's own (case C9): no
  /// membarrier and no fence tag, unless a reader registered or released between the walk and
  /// the swap; then [W2] runs, as for any untagged swap.
  void solo_swap_to(std::uintptr_t a) noexcept {
    // [W1] seq_cst exchange (release for the copy's contents): in the total order before [W8].
    core_->read_ptr.exchange(a, std::memory_order_seq_cst);
    // [W8] seq_cst: if it reads the walk's count, every registration that came later follows it
    //      in the total order, and [G5]'s seq_cst load of read_ptr, which orders that reader's
    //      first [R2], reads this swap's pointer or a later one.
    const bool barrier = core_->registry.owners_generation(std::memory_order_seq_cst) != solo_gen_;
    if (barrier) heavy_barrier();  // [W2]
    if (!barrier) ++solo_swaps_;
    fencing_ = false;
    write_ ^= 1;
    record_readers(barrier);
  }

  /// swap_to() on an adaptive core (case C8).
  /// A settle's swap keeps the mode readers are in (a reader may have relaxed it since).
  void adaptive_swap_to(std::uintptr_t a, bool publishing) noexcept {
    const bool fence = publishing ? next_fencing() : readers_fence();
    const std::uintptr_t v = fence ? a | core_type::fence_tag : a;
    bool barrier = !(fence && fencing_);
    if (barrier) {
      // [W1] release exchange, then [W2]: as in swap_to.
      core_->read_ptr.exchange(v, std::memory_order_release);
      heavy_barrier();
    } else {
      // Without a membarrier only when this swap and the last are both tagged: then every
      // reader that may be inside the copy retired now fenced on its way in. [W1] seq_cst
      // exchange: the value it replaces tells whether a reader took the last swap's tag off
      // ([R6]); if one did, readers may have entered without a fence since, and [W2] runs.
      const std::uintptr_t old = core_->read_ptr.exchange(v, std::memory_order_seq_cst);
      if ((old & core_type::fence_tag) == 0) {
        heavy_barrier();
        barrier = true;
      }
    }
    fencing_ = fence;
    write_ ^= 1;
    record_readers(barrier);
  }

  /// Adaptive cores: whether readers should fence from this publish on (fencing_rate), the
  /// publishes counted over windows of at least fencing_rate::window. Decided at publishes; after a
  /// burst, fencing readers relax by themselves (relax_if_quiet), once the relax_after set here
  /// has passed. While readers fence, the clock is read at every fencing_rate::clock_every-th
  /// publish only (a read cost a tenth of a one-thread shared_map write): relax_after then lags
  /// the last publish by fewer than that many publishes, which can only let readers relax sooner
  /// (a membarrier at the next swap), never later; the window closes at the first read past its
  /// end, its count holding every publish.
  bool next_fencing() noexcept {
    if (fencing_override_) {
      // [W7] relaxed: a hint for fencing readers ([R7]); nothing is published through it.
      core_->relax_after.store(std::numeric_limits<std::int64_t>::max(), std::memory_order_relaxed);
      // The first publish after the override reads the clock (below), so that relax_after no
      // longer holds the override's "never" and readers relax after a quiet spell again.
      unclocked_swaps_ = fencing_rate::clock_every;
      return *fencing_override_;
    }
    ++window_swaps_;
    if (fencing_ && ++unclocked_swaps_ < fencing_rate::clock_every) return true;
    unclocked_swaps_ = 0;
    const auto now = std::chrono::steady_clock::now();
    // [W7] relaxed: as above.
    core_->relax_after.store((now + fencing_rate::quiet).time_since_epoch().count(), std::memory_order_relaxed);
    const auto elapsed = now - window_start_;
    if (elapsed < fencing_rate::window) return fencing_;
    const bool fence = fencing_rate::after(window_swaps_, elapsed, fencing_);
    window_start_ = now;
    window_swaps_ = 0;
    return fence;
  }

  /// Makes the write copy equal to the read copy again, after a failed step 2.
  static void restore(T& w, const T& r) {
    if constexpr (requires { Apply::restore(w, r); }) {
      Apply::restore(w, r);
    } else {
      w = r;
    }
  }

  /// Traits::verify_copies, after a replay of n operations.
  void verify(const T& w, const T& r, std::size_t n) {
    if constexpr (Traits::verify_copies != copy_check::off &&
                  requires(const T& a) { Apply::equal(a, a); }) {
      if constexpr (Traits::verify_copies == copy_check::amortized) {
        unverified_ += n + 1;
        if constexpr (requires(const T& a) { a.size(); }) {
          if (unverified_ < w.size()) return;
        }
        unverified_ = 0;
      }
      if (!Apply::equal(w, r)) {
        throw std::logic_error(
            "leftright: the two copies differ after replay; an operation is not deterministic");
      }
    }
  }

  /// Step 4. Never throws: on allocation failure fall back to waiting for everyone next time.
  void record_readers(bool after_barrier) noexcept {
    waiting_.clear();
    recorded_version_ = version();
    try {
      core_->registry.for_each([&](reader_slot& s) {
        // [W3] seq_cst (or acquire after the membarrier [W2]): pairs with [R1] (or [R4]), cases
        //      C2 and C8.
        const std::uint64_t e = after_barrier ? s.epoch.load(std::memory_order_acquire)
                                              : s.epoch.load(std::memory_order_seq_cst);
        if (epoch_word::inside(e)) waiting_.emplace_back(&s, e);
      });
    } catch (const std::bad_alloc&) {
      lost_track_ = true;
    }
    // Only for a stall report: the clock is read when some reader may be waited for.
    if (lost_track_ || !waiting_.empty()) recorded_at_ = std::chrono::steady_clock::now();
  }

  std::shared_ptr<core_type> core_;
  std::vector<Op> pending_;  ///< queued, not yet published
  std::vector<Op> replay_;   ///< published last time, owed to the write copy
  std::optional<meta_type> pending_meta_;  ///< set_meta, not yet published
  std::optional<meta_type> replay_meta_;   ///< published last time, owed to the write copy
  /// Whether Apply keeps keys of spent operations for emplace_reusing() (Apply::recycles).
  static constexpr bool recycles = requires { requires Apply::recycles; };
  template <class A, bool>
  struct spare_store {
    struct type {};
  };
  template <class A>
  struct spare_store<A, true> {
    using type = std::vector<typename A::spare_key>;
  };
  /// Keys of operations applied twice, for emplace_reusing() (if recycles): at most spare_cap,
  /// and never more than the last batch had.
  [[no_unique_address]] typename spare_store<Apply, recycles>::type spare_;
  static constexpr std::size_t spare_cap = 4096;
  std::vector<std::pair<reader_slot*, std::uint64_t>> waiting_;  ///< inside at the last swap
  unsigned write_ = 1;       ///< index of the copy readers do not use
  bool lost_track_ = false;  ///< recording failed: wait for all readers next time
  std::size_t unverified_ = 0;  ///< operations replayed since the last copy_check::amortized check
  bool poisoned_ = false;    ///< a failed publish left the write copy unrepaired
  bool settled_ = true;      ///< the copies are equal and owe nothing (no publish since a settle)
  // Adaptive cores (next_fencing): whether the last swap asked readers to fence, the swaps in
  // the current window and when it began, and a fixed choice that replaces the rate's.
  bool fencing_ = false;
  std::uint64_t window_swaps_ = 0;
  std::uint32_t unclocked_swaps_ = 0;  ///< publishes since the clock was last read (next_fencing)
  std::chrono::steady_clock::time_point window_start_{};
  std::optional<bool> fencing_override_;
  // Case C9 (solo_candidate): what the last walk found (registry::sole_owner) and at which count
  // of the registry (at first a count it never reaches: the first swap walks), and how many
  // swaps went without a barrier.
  std::uint64_t sole_owner_ = slot_owner::any_thread;
  std::uint64_t solo_gen_ = ~std::uint64_t{0};
  std::uint64_t solo_swaps_ = 0;
  std::size_t held_limit_ = held_copy_limit_default;  ///< set_held_copy_limit
  std::uint64_t skip_to_ = 0;  ///< the next publish's version if larger than the next one (skip_to)
  // The stall report (set_stall_report): after how long, to whom (empty: stderr), and when and
  // at which version the readers waited for were recorded.
  std::chrono::nanoseconds stall_after_ = std::chrono::seconds(10);
  std::function<void(const reader_stall&)> stall_report_;
  std::uint64_t recorded_version_ = 0;
  std::chrono::steady_clock::time_point recorded_at_{};
};

}  // namespace detail
}  // namespace leftright
