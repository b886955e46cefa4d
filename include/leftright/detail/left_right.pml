// SPDX-License-Identifier: Apache-2.0
/*
 * leftright: a Promela model of the reader/writer epoch protocol in left_right.hpp and
 * epoch.hpp, checked with spin (scripts/test runs it; see scripts/model).
 *
 * What it checks, over every interleaving:
 *   - safety: no reader ever reads a copy while the writer writes it, or after the writer has
 *     freed it (the assertions);
 *   - the writer's wait ends once the readers it waits for leave, and registering or
 *     releasing a slot during a wait cannot deadlock: spin reports any state where some
 *     process is blocked forever (an "invalid end state").
 *
 * Memory model: spin interleaves steps under sequential consistency, which is what the seq_cst
 * reader mode provides for [R1], [R2], [W1], [W3] and the registry's [G2]/[G3]. With ASYM
 * (scripts/model's third run) the readers are asymmetric ([R1] a plain store, [W2] a membarrier)
 * on x86-TSO, where a store may wait in its CPU's store buffer while the CPU's later loads run:
 *   - a reader's stores to its epoch word ([R1], a nested guard's, [R3]) may stay pending,
 *     invisible to the writer, while the reader goes on to load read_ptr [R2] and read; a drain
 *     step, taken at any moment, makes the pending store visible. The reader's own loads of its
 *     word see its pending value (store forwarding).
 *   - the buffer holds one store per slot: a new store waits until the pending one has drained.
 *     This is a restriction: a real buffer holds several, drained in order (the writer sees the
 *     same sequence of values, later).
 *   - the writer's membarrier [W2] drains every pending store in one step (it runs a full fence
 *     on the CPU of each thread of the process; the model runs them all at once).
 *   - [W1] is visible at once: an exchange, or a store followed by the syscall's fence.
 *   - every other store is sequentially consistent. The registry's stores are made under its
 *     mutex and followed by the locked owners_gen increment, which drains them ([G5], [G6]); a
 *     release waits until its reader's last store has drained (locking the mutex is a locked
 *     instruction, a full fence). Only the writer loads its own slot's word, and it sees its own
 *     stores at once.
 *   - the writer loads visible values; [W8]'s relaxed check may also read the last value of
 *     owners_gen this thread loaded (coherence allows no older one).
 *
 * Map from model steps to the labels of the protocol essay:
 *   acquire slot (under the registry lock)  -> reader_registry::acquire, [G2] publishes the slot
 *   gen[s]++, cnt[s] = 1 before read_ptr    -> [R1] (one store of the epoch word: a generation
 *                                              more, one guard), then p = read_ptr is [R2]
 *   cnt[s]++ while inside                   -> a nested guard (case C5): same snapshot p
 *   assert(!writing[p])                     -> a lookup in the pinned copy, by any live guard
 *   cnt[s]-- (each guard, in either order)  -> [R3]; the read ends when the count is 0
 *   release slot (under the registry lock)  -> reader_registry::release (count 0)
 *   wait: cnt == 0 || gen != seen gen       -> [W4], step 1 of publish (epoch_word::left_since)
 *   writing[w] = 1 ... 0                    -> step 2 (replay + apply to the write copy)
 *   read_ptr = w                            -> [W1], step 3
 *   for each listed slot: seen = its word   -> [G3] + [W3], step 4 (record the slots inside)
 *   give up waiting, detach the write copy  -> publish_within past its bound (case C7): the write
 *                                              copy is held with the readers still recorded, a
 *                                              fresh one is built (written) from a free copy
 *   free a held copy                        -> [W6]: once each holder has left its read, the
 *                                              copy is destroyed (written) and freed
 * and with ASYM:
 *   EPOCH_STORE: once !pend[s], gen[s],     -> a reader's store to its word ([R1], [R3], a
 *   cnt[s] = the new word, pend[s] = 1         nested guard's) into its store buffer; the
 *                                              writer loads mgen[s], mcnt[s] (memory)
 *   drainer(s): mgen[s], mcnt[s] = gen[s],  -> the store buffer drains the pending store
 *   cnt[s], pend[s] = 0
 *   drain every slot's pending store        -> [W2] membarrier (skipped by a solo swap)
 *   owner[s] = _pid or ROAMING (under the   -> [G5] registration: the owner store (with [G2]
 *   lock), then owners_gen++                   for a new slot), the seq_cst increment, then
 *                                              a seq_cst load of read_ptr before the first
 *                                              [R1] (no step: loads of read_ptr are SC here)
 *   owner[s] = 0, owners_gen++ (the lock)   -> [G6] release, by a reader outside its reads
 *   og = owners_gen or the last value seen  -> [W8] relaxed: walk again if not the cached og
 *   og = owners_gen, then each owner[i]     -> [W8] acquire: the walk; solo if every owner is
 *                                              0 or the writer's (_pid); cached with og
 *   og = owners_gen after a solo [W1]       -> [W8] seq_cst: still the walk's og: no [W2]
 *                                              (case C9, the solo swap); else [W2]
 *   the writer's slot (owner: the writer)   -> its per-thread reader: a read between
 *                                              publishes, or a guard held across one publish
 *                                              (seen inside by that publish's own [W3])
 * Reader processes are other threads (thread id: their _pid); each registration takes, at
 * random, the reader's id or ROAMING (a reader handle any thread may use) as its owner. Either
 * makes a swap not solo. The writer registers its own slot first, waiting for a free one.
 * With DETACH (scripts/model's second run) the writer may stop waiting for recorded readers at
 * any moment (the bound passing, or a reader already holding a copy) and detach, while a free
 * copy is left (COPIES bounds live + held copies: the held-copy limit); a freed copy goes back
 * to the pool and is built again by a later detachment. The model fails if a reader that already
 * holds a copy is left out of the writer's record (a shortcut C7 explains is unsound: that reader
 * may be in the read copy), and if a held copy is freed before its holders leave.
 * The generation counts modulo GENS (default 2), so its wrap-around is checked too: the real
 * word's 34-bit generation wraps after 2^34 reads, and the wrap must never let the writer in
 * early. The epoch word is one atomic; the model updates its two fields in one step.
 *
 * Switches that break the asymmetric protocol, to show that the model finds the fault (each
 * fails with an assertion violation; scripts/model checks that they do):
 *   BROKEN_ALWAYS_SOLO   no swap runs [W2], as if every swap were solo
 *   BROKEN_NO_GEN_BUMP   a registration does not increment owners_gen
 *   BROKEN_NO_RECHECK    a solo swap skips [W2] without the [W8] load after [W1]
 */

/* The configuration scripts/model checks (override with spin -DNAME=value):
 * 3 readers share 2 slots, so slots are reused and epochs carry across owners; each reader
 * makes READS reads; the writer makes PUBLISHES publishes. With ASYM, scripts/model runs 2 reader
 * threads and 2 slots: the writer's own and one the readers take in turn (a swap may be solo while
 * that slot is free). */
#ifndef SLOTS
#define SLOTS 2
#endif
#ifndef READERS
#define READERS 3
#endif
#ifndef READS
#define READS 1
#endif
#ifndef PUBLISHES
#define PUBLISHES 4
#endif
#ifndef GENS
#define GENS 2
#endif
/* Copies: the two live ones, and up to COPIES - 2 held or free ones for detachments. */
#ifdef DETACH
#ifndef COPIES
#define COPIES 4
#endif
#else
#define COPIES 2
#endif

/* A read of copy p by a live guard: never while it is written, never once it is freed. */
#define READ(p) assert(!writing[p] && !freed[p])

byte read_ptr = 0;           /* which copy readers use */
bool writing[COPIES];        /* the writer is changing (building, destroying) this copy */
bool freed[COPIES];          /* not allocated: in the writer's pool (copies 2.. at the start) */
bool held[COPIES];           /* detached: held by the readers in holder[] */
bool holder[COPIES * SLOTS]; /* holder[c * SLOTS + s]: slot s may be inside held copy c ... */
byte hseen[COPIES * SLOTS];  /* ... in this generation */
byte gen[SLOTS];             /* epoch word: reads entered (mod GENS) ... */
byte cnt[SLOTS];             /* ... and live guards of the current read (inside: > 0) */
bool listed[SLOTS];          /* in the registry's list (never removed: the list is append-only) */
bool in_use[SLOTS];          /* owned by a live reader */
bool lock = 0;               /* the registry mutex (never held across a wait, so always free) */
bool recorded[SLOTS];        /* the writer's record of the last swap: slot was inside ... */
byte seen[SLOTS];            /* ... in this generation */

#ifdef ASYM
/* gen[s], cnt[s] are the word as its reader sees it; other CPUs see mgen[s], mcnt[s]. */
#define ROAMING 255          /* owner: a reader handle any thread may use */
byte mgen[SLOTS];            /* the epoch word in memory: what the writer loads ... */
byte mcnt[SLOTS];
bool pend[SLOTS];            /* ... older than gen/cnt while the reader's store is pending */
byte owner[SLOTS];           /* 0: free; a thread id (the _pid of its process); ROAMING */
byte owners_gen = 0;         /* registrations and releases so far */
#define VGEN(s) mgen[s]
#define VCNT(s) mcnt[s]
/* A reader's store to its word: into the (one-entry) store buffer, once it is empty. */
#define EPOCH_STORE(s, g, c) atomic { !pend[s]; gen[s] = g; cnt[s] = c; pend[s] = 1 }
#define ENTER(s) EPOCH_STORE(s, (gen[s] + 1) % GENS, 1)
#define GUARD_ADD(s) EPOCH_STORE(s, gen[s], cnt[s] + 1)
#define GUARD_SUB(s) EPOCH_STORE(s, gen[s], cnt[s] - 1)
/* The writer's [R1] on its own slot: its own loads see it at once, and no other thread loads it. */
#define OWN_ENTER(s) atomic { gen[s] = (gen[s] + 1) % GENS; cnt[s] = 1; mgen[s] = gen[s]; mcnt[s] = 1 }
#else
#define VGEN(s) gen[s]
#define VCNT(s) cnt[s]
#define ENTER(s) atomic { gen[s] = (gen[s] + 1) % GENS; cnt[s] = 1 }
#define GUARD_ADD(s) cnt[s]++
#define GUARD_SUB(s) cnt[s]--
#endif

proctype reader() {
  byte s = 255;
  byte p;
  byte i;
  byte n = 0;
  do
  :: n == READS -> break
  :: else ->
     /* register: a free slot, reused or new. Everything under the registry mutex is one step
        (no other registry operation can interleave; the writer's walk reads only listed[],
        which changes in one store, [G2], and with ASYM owner[], stored with it [G5]). */
     atomic {
       lock == 0;
       i = 0;
       do
       :: i == SLOTS -> break
       :: i < SLOTS && !in_use[i] -> in_use[i] = 1; listed[i] = 1; s = i; break
       :: i < SLOTS && in_use[i] -> i++
       od
#ifdef ASYM
       ;
       if
       :: s != 255 -> owner[s] = _pid     /* [G5] a per-thread reader */
       :: s != 255 -> owner[s] = ROAMING  /* [G5] a handle any thread may use */
       :: else -> skip
       fi;
       i = 0
#endif
     }
     if
     :: s == 255 -> skip          /* no free slot now: try again later */
     :: s != 255 ->
#ifdef ASYM
#ifndef BROKEN_NO_GEN_BUMP
        owners_gen++;             /* [G5] seq_cst RMW; then a seq_cst load of read_ptr */
#endif
#endif
        ENTER(s);                 /* [R1] inside: one guard */
        p = read_ptr;             /* [R2] */
        READ(p);
        if
        :: GUARD_SUB(s)           /* [R3] one guard, no nesting: outside */
        :: GUARD_ADD(s);          /* a nested guard */
           READ(p);
           if
           :: GUARD_SUB(s);       /* the nested guard leaves first */
              READ(p);
              GUARD_SUB(s)        /* then the outermost: outside */
           :: GUARD_SUB(s);       /* the outermost leaves first: still inside */
              READ(p);
              if
              :: GUARD_ADD(s);    /* a read() now is nested too: the same snapshot */
                 READ(p);
                 GUARD_SUB(s)
              :: skip
              fi;
              READ(p);
              GUARD_SUB(s)        /* the last guard: outside */
           fi
        fi;
        n++;
#ifdef ASYM
        /* release [G6], once the store buffer has drained (locking the mutex is a locked
           instruction: a full fence) */
        atomic { lock == 0 && !pend[s]; in_use[s] = 0; owner[s] = 0; owners_gen++; p = 0 }
#else
        atomic { lock == 0; in_use[s] = 0 }  /* release: the slot may be reused by another reader */
#endif
        s = 255
     fi
  od
}

#ifdef ASYM
/* The store buffer of slot s's reader: drains its pending store at any moment. */
proctype drainer(byte s) {
end:
  do
  :: atomic { pend[s] -> mgen[s] = gen[s]; mcnt[s] = cnt[s]; pend[s] = 0 }
  od
}
#endif

proctype writer() {
  byte k = 0;
  byte i;
  byte c;
  byte w = 1;                /* the write copy (copies[write_]) */
  byte e;
  byte n;
  byte f;
#ifdef ASYM
  byte ws = 255;             /* the writer's own (per-thread) slot */
  byte wp;                   /* the copy its guard pinned ... */
  bool wheld = 0;            /* ... while it holds one across a publish */
  byte og;                   /* an owners_gen load */
  byte lastg;                /* the last owners_gen value this thread loaded */
  byte cg = 255;             /* the cached walk: at this owners_gen ... */
  bool csolo = 0;            /* ... every owner was free or this thread */
  bool barrier;
  /* register the writer's own slot [G5], as a reader does (waiting for a free slot) */
  do
  :: ws != 255 -> break
  :: else ->
     atomic {
       lock == 0;
       i = 0;
       do
       :: i == SLOTS -> break
       :: i < SLOTS && !in_use[i] -> in_use[i] = 1; listed[i] = 1; owner[i] = _pid; ws = i; break
       :: i < SLOTS && in_use[i] -> i++
       od;
       i = 0
     }
  od;
  atomic { owners_gen++; lastg = owners_gen };  /* [G5] the RMW returns the count */
#endif
  do
  :: k == PUBLISHES -> break
  :: else ->
#ifdef ASYM
     /* the writer's own reads, ordered with its publishes by program order; its stores to its
        word are seen at once by its own loads, and no other thread loads them */
     if
     :: skip
     :: OWN_ENTER(ws);       /* [R1]: a read between publishes */
        wp = read_ptr;       /* [R2] */
        READ(wp);
        atomic { cnt[ws] = 0; mcnt[ws] = 0; wp = 0 }  /* [R3] */
     :: OWN_ENTER(ws);       /* [R1]: a guard held across this publish */
        wp = read_ptr;       /* [R2] */
        READ(wp);
        wheld = 1
     fi;
#endif
#ifdef DETACH
     /* free the held copies whose holders have all left ([W6]) */
     c = 0;
     do
     :: c == COPIES -> break
     :: c < COPIES && !held[c] -> c++
     :: c < COPIES && held[c] ->
        n = 0;
        i = 0;
        do
        :: i == SLOTS -> break
        :: i < SLOTS ->
           if
           :: holder[c * SLOTS + i] && (VCNT(i) == 0 || VGEN(i) != hseen[c * SLOTS + i]) -> holder[c * SLOTS + i] = 0
           :: else -> skip
           fi;
           n = n + holder[c * SLOTS + i];
           i++
        od;
        if
        :: n == 0 -> held[c] = 0; writing[c] = 1; writing[c] = 0; freed[c] = 1  /* destroyed */
        :: else -> skip
        fi;
        c++
     od;
#endif
     /* step 1: wait for the readers recorded at the previous swap [W4]; with DETACH the wait may
        end with some still recorded (the bound passed) */
     i = 0;
     do
     :: i == SLOTS -> break
     :: i < SLOTS && !recorded[i] -> i++
     :: i < SLOTS && recorded[i] -> (VCNT(i) == 0 || VGEN(i) != seen[i]); recorded[i] = 0; i++
#ifdef DETACH
     :: i < SLOTS && recorded[i] -> i++  /* gave up on this one */
#endif
     od;
#ifdef DETACH
     /* the free copy a detachment would build, if any */
     f = 0;
     do
     :: f == COPIES -> break
     :: f < COPIES && freed[f] -> break
     :: f < COPIES && !freed[f] -> f++
     od;
     n = 0;
     i = 0;
     do
     :: i == SLOTS -> break
     :: i < SLOTS -> n = n + recorded[i]; i++
     od;
     if
     :: n > 0 && f < COPIES ->
        /* case C7: hold the write copy for the readers still recorded, build a fresh one */
        i = 0;
        do
        :: i == SLOTS -> break
        :: i < SLOTS ->
           holder[w * SLOTS + i] = recorded[i];
           hseen[w * SLOTS + i] = seen[i];
           recorded[i] = 0;
           i++
        od;
        held[w] = 1;
        freed[f] = 0;
        writing[f] = 1;       /* built from the read copy (only read) */
        writing[f] = 0;
        w = f
     :: else ->
        /* no detachment (at the limit): wait as publish() does */
        i = 0;
        do
        :: i == SLOTS -> break
        :: i < SLOTS && !recorded[i] -> i++
        :: i < SLOTS && recorded[i] -> (VCNT(i) == 0 || VGEN(i) != seen[i]); recorded[i] = 0; i++
        od
     fi;
#endif
     /* step 2: write the copy readers do not use */
     writing[w] = 1;
     writing[w] = 0;
#ifdef ASYM
     /* [W8] relaxed: the count, or the last value loaded; another value than the cache's: walk */
     if
     :: og = owners_gen
     :: og = lastg
     fi;
     if
     :: og != cg ->
        atomic { og = owners_gen; lastg = og };  /* [W8] acquire */
        csolo = 1;
        i = 0;
        do
        :: i == SLOTS -> break
        :: i < SLOTS ->
           if
           :: owner[i] != 0 && owner[i] != _pid -> csolo = 0  /* [W8] acquire */
           :: else -> skip
           fi;
           i++
        od;
        cg = og
     :: else -> skip
     fi;
     og = 0;
#endif
     /* step 3: the swap [W1]; the retired copy is the next write copy */
     f = read_ptr;
     read_ptr = w;
     w = f;
#ifdef ASYM
     barrier = 1;
#ifndef BROKEN_ALWAYS_SOLO
     if
     :: csolo ->
#ifdef BROKEN_NO_RECHECK
        barrier = 0
#else
        atomic { og = owners_gen; lastg = og; barrier = (og != cg); og = 0 }  /* [W8] seq_cst */
#endif
     :: else -> skip
     fi;
#else
     barrier = 0;
#endif
     if
     :: barrier ->
        /* [W2] membarrier: a full fence on every reader's CPU drains its store buffer */
        atomic {
          i = 0;
          do
          :: i == SLOTS -> break
          :: i < SLOTS ->
             if
             :: pend[i] -> mgen[i] = gen[i]; mcnt[i] = cnt[i]; pend[i] = 0
             :: else -> skip
             fi;
             i++
          od
        }
     :: else -> skip        /* case C9: a solo swap */
     fi;
#endif
     /* step 4: record the readers inside now [G3][W3] */
     i = 0;
     do
     :: i == SLOTS -> break
     :: i < SLOTS ->
        atomic { e = VGEN(i); c = VCNT(i) }  /* one load of the word, as in record_readers() */
        if
        :: listed[i] && c > 0 -> recorded[i] = 1; seen[i] = e
        :: else -> recorded[i] = 0
        fi;
        i++
     od;
#ifdef ASYM
     if
     :: wheld -> READ(wp); atomic { cnt[ws] = 0; mcnt[ws] = 0; wp = 0; wheld = 0 }  /* [R3] */
     :: else -> skip
     fi;
#endif
     k++
  od
}

init {
  byte r = 0;
  byte c;
  atomic {
    c = 2;
    do
    :: c < COPIES -> freed[c] = 1; c++
    :: else -> break
    od;
    run writer();
    do
    :: r < READERS -> run reader(); r++
    :: else -> break
    od;
#ifdef ASYM
    c = 0;
    do
    :: c < SLOTS -> run drainer(c); c++
    :: else -> break
    od
#endif
  }
}
