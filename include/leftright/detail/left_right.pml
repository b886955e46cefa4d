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
 * reader mode provides for [R1], [R2], [W1], [W3] and the registry's [G2]/[G3]. The asymmetric
 * mode reaches the same orders through membarrier (case C2 of the essay); that argument is not
 * in this model.
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
 * With DETACH (scripts/model's second run) the writer may stop waiting for recorded readers at
 * any moment (the bound passing, or a reader already holding a copy) and detach, while a free
 * copy is left (COPIES bounds live + held copies: the held-copy limit); a freed copy goes back
 * to the pool and is built again by a later detachment. The model fails if a reader that already
 * holds a copy is left out of the writer's record (a shortcut C7 explains is unsound: that reader
 * may be in the read copy), and if a held copy is freed before its holders leave.
 * The generation counts modulo GENS (default 2), so its wrap-around is checked too: the real
 * word's 34-bit generation wraps after 2^34 reads, and the wrap must never let the writer in
 * early. The epoch word is one atomic; the model updates its two fields in one step.
 */

/* The configuration scripts/model checks (override with spin -DNAME=value):
 * 3 readers share 2 slots, so slots are reused and epochs carry across owners; each reader
 * makes READS reads; the writer makes PUBLISHES publishes. */
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
        which changes in one store, [G2]). */
     atomic {
       lock == 0;
       i = 0;
       do
       :: i == SLOTS -> break
       :: i < SLOTS && !in_use[i] -> in_use[i] = 1; listed[i] = 1; s = i; break
       :: i < SLOTS && in_use[i] -> i++
       od
     }
     if
     :: s == 255 -> skip          /* no free slot now: try again later */
     :: s != 255 ->
        atomic { gen[s] = (gen[s] + 1) % GENS; cnt[s] = 1 }  /* [R1] inside: one guard */
        p = read_ptr;             /* [R2] */
        READ(p);
        if
        :: cnt[s]--               /* [R3] one guard, no nesting: outside */
        :: cnt[s]++;              /* a nested guard */
           READ(p);
           if
           :: cnt[s]--;           /* the nested guard leaves first */
              READ(p);
              cnt[s]--            /* then the outermost: outside */
           :: cnt[s]--;           /* the outermost leaves first: still inside */
              READ(p);
              if
              :: cnt[s]++;        /* a read() now is nested too: the same snapshot */
                 READ(p);
                 cnt[s]--
              :: skip
              fi;
              READ(p);
              cnt[s]--            /* the last guard: outside */
           fi
        fi;
        n++;
        atomic { lock == 0; in_use[s] = 0 }  /* release: the slot may be reused by another reader */
        s = 255
     fi
  od
}

proctype writer() {
  byte k = 0;
  byte i;
  byte c;
  byte w = 1;                /* the write copy (copies[write_]) */
  byte e;
  byte n;
  byte f;
  do
  :: k == PUBLISHES -> break
  :: else ->
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
           :: holder[c * SLOTS + i] && (cnt[i] == 0 || gen[i] != hseen[c * SLOTS + i]) -> holder[c * SLOTS + i] = 0
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
     :: i < SLOTS && recorded[i] -> (cnt[i] == 0 || gen[i] != seen[i]); recorded[i] = 0; i++
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
        :: i < SLOTS && recorded[i] -> (cnt[i] == 0 || gen[i] != seen[i]); recorded[i] = 0; i++
        od
     fi;
#endif
     /* step 2: write the copy readers do not use */
     writing[w] = 1;
     writing[w] = 0;
     /* step 3: the swap [W1]; the retired copy is the next write copy */
     f = read_ptr;
     read_ptr = w;
     w = f;
     /* step 4: record the readers inside now [G3][W3] */
     i = 0;
     do
     :: i == SLOTS -> break
     :: i < SLOTS ->
        atomic { e = gen[i]; c = cnt[i] }  /* one load of the word, as in record_readers() */
        if
        :: listed[i] && c > 0 -> recorded[i] = 1; seen[i] = e
        :: else -> recorded[i] = 0
        fi;
        i++
     od;
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
    od
  }
}
