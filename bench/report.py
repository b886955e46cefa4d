#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Turns leftright_bench's JSON output into bench/results/README.md and PNG charts.

Usage: report.py RESULTS_JSON OUT_DIR [--durable DURABLE_JSON] [--build-dir DIR]
                 [--elapsed SECONDS] [--command TEXT]

RESULTS_JSON holds the in-memory suite, DURABLE_JSON the durability benchmarks (durable_*), each
from its own run (scripts/bench keeps them apart); either may be missing. Tables use the median of
the repetitions (or the single run with --quick) and give every map's rate as a ratio to the limit
(an unsynchronized absl::flat_hash_map) measured in the same run; every durability figure is a
ratio to a baseline from the same run as well. Standard library only; the charts are drawn by
gnuplot when it is installed.

It writes OUT_DIR/README.md and the charts, nothing else: not the top-level README.md (whose
Benchmarks section holds a few key figures, revised by hand) and not OUT_DIR/notes.md (the
figures explained, by hand), which the report links to when it is there.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

# Display order of the maps; anything else found in the results is appended.
MAP_ORDER = ["limit", "epoch_floor", "lr_seq_cst", "lr_asym", "lr_auto", "shared_mutex", "absl_mutex", "tbb_chm",
             "libcuckoo", "urcu_lfht"]
OURS = {"lr_seq_cst", "lr_asym", "lr_auto"}
# Reference rows: not maps a user would pick, so never "the best peer".
REFERENCES = {"limit", "epoch_floor"}
MAP_NOTES = {
    "limit": "one unsynchronized absl::flat_hash_map (never written while read)",
    "epoch_floor": "the limit's table read through the barest per-read epoch protocol (a load "
                   "and two stores to a reader-owned line per read; no nesting, no writer): how "
                   "close any left-right reader can come to the limit on this machine",
    "lr_seq_cst": "leftright::map, reader_sync::seq_cst",
    "lr_asym": "leftright::map, reader_sync::asymmetric (membarrier)",
    "lr_auto": "leftright::map, reader_sync::automatic (the default: asymmetric while publishes "
               "are rare, readers fencing while they are frequent)",
    "shared_mutex": "std::shared_mutex + absl::flat_hash_map",
    "absl_mutex": "absl::Mutex (ReaderMutexLock) + absl::flat_hash_map",
    "tbb_chm": "oneTBB concurrent_hash_map",
    "libcuckoo": "libcuckoo cuckoohash_map",
    "urcu_lfht": "liburcu cds_lfht, urcu-memb flavour",
}


def load(path):
    if not path or not os.path.exists(path):
        return {}, {}
    with open(path) as f:
        data = json.load(f)
    runs = {}
    for b in data.get("benchmarks", []):
        if b.get("error_occurred"):
            # Left out of every table and verdict: say so, so that a verdict over the rows
            # left is not read as one over them all.
            print(f"report.py: {path}: {b.get('run_name') or b['name']} failed and is left out: "
                  f"{b.get('error_message', '')}", file=sys.stderr)
            continue
        kind = b.get("run_type")
        if kind == "aggregate" and b.get("aggregate_name") != "median":
            continue
        name = b.get("run_name") or b["name"]
        # A median beats a single iteration run of the same name.
        if kind == "iteration" and name in runs and runs[name]["_median"]:
            continue
        b = dict(b)
        b["_median"] = kind == "aggregate"
        runs[name] = b
    return data.get("context", {}), runs


def parse(name):
    """'lookup/limit/u64/1K/hit/guard1/real_time/threads:2' -> (['lookup', ...], {'threads': 2})."""
    parts = name.split("/")
    fields, opts = [], {}
    for p in parts:
        if p in ("real_time", "manual_time"):
            continue
        m = re.fullmatch(r"(threads|iterations|repeats|min_time):(.+)", p)
        if m:
            opts[m.group(1)] = m.group(2)
        else:
            fields.append(p)
    opts["threads"] = int(opts.get("threads", 1))
    return fields, opts


def index(runs):
    """{scenario: [(fields, opts, run)]}"""
    out = {}
    for name, r in runs.items():
        fields, opts = parse(name)
        out.setdefault(fields[0], []).append((fields[1:], opts, r))
    return out


def maps_in(entries, pos=0):
    found = {f[pos] for f, _, _ in entries}
    return [m for m in MAP_ORDER if m in found] + sorted(found - set(MAP_ORDER))


def rate(v, unit=""):
    if v is None:
        return "–"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g} {suffix}{unit}"
    return f"{v:.3g} {unit}".strip()


def ns(v):
    if v is None:
        return "–"
    if v >= 1e6:
        return f"{v / 1e6:.3g} ms"
    if v >= 1e3:
        return f"{v / 1e3:.3g} µs"
    return f"{v:.0f} ns"


def cell(v, ref):
    if v is None:
        return "–"
    if ref:
        return f"{rate(v)} ({v / ref:.2f}×)"
    return rate(v)


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def best_peer(values):
    """values: {map: rate}. The fastest map that is neither ours nor the limit."""
    peers = {m: v for m, v in values.items() if m not in OURS and m not in REFERENCES and v is not None}
    if not peers:
        return None, None
    m = max(peers, key=peers.get)
    return m, peers[m]


# ----------------------------------------------------------------------------------------------
# Sections


def lookup_values(entries):
    """{(key, size, mix, guard, threads): {map: items/s}}"""
    vals = {}
    for f, o, r in entries:
        m, key, size, mix, guard = f[:5]
        vals.setdefault((key, size, mix, guard, o["threads"]), {})[m] = r.get("items_per_second")
    return vals


def pair_values(entries):
    """{(key, size, mix, guard, threads): {map: paired ratio to the limit}} from lookup_pair."""
    vals = {}
    for f, o, r in entries:
        m, key, size, mix, guard = f[:5]
        vals.setdefault((key, size, mix, guard, o["threads"]), {})[m] = r.get("ratio")
    return vals


def section_key_figures(entries, pairs):
    vals = lookup_values(entries)
    pvals = pair_values(pairs)
    rows = []
    for size in ("1M", "1K"):
        for threads in (1, 2):
            v = vals.get(("u64", size, "hit", "guard1", threads), {})
            lim = v.get("limit")
            pv = pvals.get(("u64", size, "hit", "guard1", threads))
            if pv:
                ratios = dict(pv)
            elif v and lim:
                ratios = {m: (x / lim if x is not None else None) for m, x in v.items() if m != "limit"}
            else:
                continue
            peer, peer_ratio = best_peer(ratios)

            def fmt(x):
                return f"{x:.2f}×" if x is not None else "–"

            def over_peer(m):
                x = ratios.get(m)
                return f"{x / peer_ratio:.1f}×" if (x is not None and peer_ratio) else "–"

            rows.append([size, threads, rate(lim, "/s"), fmt(ratios.get("epoch_floor")), fmt(ratios.get("lr_seq_cst")),
                         fmt(ratios.get("lr_asym")), f"{peer} {fmt(peer_ratio)}" if peer else "–",
                         f"{over_peer('lr_seq_cst')} / {over_peer('lr_asym')}"])
    if not rows:
        return ""
    how = ("each ratio comes from many pairs of back-to-back phases (the geometric mean of the medians of the two orders' pairs), the limit's and the "
           "map's, on the same keys with every thread in the same phase (`lookup_pair`, see "
           "below): on this shared machine the noise between two separate benchmarks moves a "
           "ratio by ±0.15, within a pair it mostly cancels" if pvals else
           "from separate benchmarks of the same run")
    return ("## Key figures\n\nLookups of present `uint64_t` keys, one guard per lookup, as a ratio "
            "to the limit (1.00× = as fast as an unsynchronized absl::flat_hash_map): " + how +
            ". The limit's own rate is from the lookup scenario. Last column: ours over the best "
            "peer (seq_cst / asymmetric).\n\n" +
            table(["map size", "threads", "limit (lookups/s)", "epoch floor", "lr_seq_cst", "lr_asym",
                   "best peer", "ours / best peer"], rows) + "\n")


def section_pairs(pairs):
    if not pairs:
        return ""
    pvals = pair_values(pairs)
    maps = maps_in(pairs)

    def order(k):
        return (k[0] != "u64", k[1] != "1K", k[3] != "guard1", k[2] != "hit", k[4])

    ours = [m for m in MAP_ORDER if m in OURS]
    rows, behind, compared = [], [], 0
    for k in sorted(pvals, key=order):
        v = pvals[k]
        peer, peer_ratio = best_peer(v)
        cells = []
        for m in ours:
            x = v.get(m)
            if x is None or peer_ratio is None:
                cells.append("–")
                continue
            compared += 1
            cells.append(f"{x / peer_ratio:.2f}×")
            if x <= peer_ratio:
                behind.append(f"{m} on {k[0]} {k[1]} {k[2]} {k[3]} at {k[4]} thread(s): "
                              f"{x:.2f}× against {peer} {peer_ratio:.2f}×")
        rows.append(list(k) + [f"{v[m]:.2f}×" if v.get(m) is not None else "–" for m in maps] +
                    [peer or "–"] + cells)
    if compared:
        verdict_line = (f"Ahead of every peer: ours ahead of the best peer in {compared - len(behind)} of "
                        f"{compared} comparisons (each of our two reader modes in each workload)" +
                        (": **met**." if not behind else "; behind in " + "; ".join(behind) + "."))
    else:
        verdict_line = ""
    return ("## Lookups paired with the limit\n\n`lookup_pair`: every iteration runs the same "
            "lookups on the limit and on the map, one phase after the other, the order "
            "alternating, all threads in the same phase (a barrier between phases); the figure is "
            "the geometric mean of the two orders' medians (limit first, map first) of the limit's phase time over the map's: the map's "
            "rate as a fraction of the limit's, measured so that a burst of noise on this shared "
            "machine spoils a few pairs rather than the ratio. The same read-only workloads as "
            "the lookup scenario (`guard16`: one guard per 16 lookups, only maps whose guard can "
            "span lookups; the limit's phase runs the same lookups unguarded). Last columns: the "
            "best peer in the row, and ours over it (two maps compared through their paired "
            "ratios to the same limit).\n\n" +
            table(["key", "size", "mix", "guard", "threads"] + maps + ["best peer"] +
                  [f"{m} / best peer" for m in ours], rows) + "\n\n" + verdict_line + "\n")


def section_lookup(entries):
    if not entries:
        return ""
    vals = lookup_values(entries)
    maps = maps_in(entries)
    out = ["## Lookups, no writer\n",
           "Median lookups per second (all threads together), and in parentheses the ratio to "
           "the limit in the same row. `hit`: every key present; `miss10`: 10% absent. `guard1`: "
           "one guard (lock, epoch, RCU read section) per lookup; `guard16`: one per 16 lookups "
           "(only maps where a guard can span lookups). Wall-clock time; 2 threads on this "
           "2-core machine.\n"]
    for key in ("u64", "str16"):
        rows = []
        for k in sorted(vals, key=lambda k: (k[1] != "1K", k[3] != "guard1", k[2] != "hit", k[4])):
            if k[0] != key:
                continue
            v = vals[k]
            lim = v.get("limit")
            ref = lim if k[3] == "guard1" else vals.get((key, k[1], k[2], "guard1", k[4]), {}).get("limit")
            rows.append([k[1], k[2], k[3], k[4]] + [cell(v.get(m), ref) for m in maps])
        if rows:
            out.append(f"### `{key}` keys\n")
            out.append(table(["size", "mix", "guard", "threads"] + maps, rows) + "\n")
    return "\n".join(out)


def section_scaling_pair(entries):
    if not entries:
        return ""
    maps = maps_in(entries)
    vals = {}
    for f, o, r in entries:
        m, key, size = f[:3]
        vals.setdefault((key, size), {})[m] = r.get("scaling")
    rows, misses = [], []
    for k in sorted(vals, key=lambda k: (k[0] != "u64", k[1] != "1K")):
        rows.append(list(k) + [f"{vals[k][m]:.2f}" if vals[k].get(m) is not None else "–" for m in maps])
        for m in maps:
            v = vals[k].get(m)
            if m in OURS and v is not None and v < 1.9:
                misses.append(f"{m} on {k[1]} ({v:.2f})")
    verdict_line = ""
    if any(v is not None for k in vals for m, v in vals[k].items() if m in OURS):
        verdict_line = ("Target 2 threads ≥ 1.9 × 1 thread: " +
                        ("**met** by every reader mode and size." if not misses else
                         "**missed** by " + ", ".join(misses) + ".") + "\n")
    return "\n".join([
        "### Reader scaling, paired\n",
        "`scaling_pair`: one 2-thread benchmark alternates a solo phase (thread 0 looks up "
        "while thread 1 waits) and a duo phase (both threads look up as many keys each), every "
        "phase on keys no recent phase read; the figure is the geometric mean of the two orders' medians of "
        "the duo phase's lookups per second (both threads, over the span from the first start to the last end) over the solo phase's: 2.00 is "
        "perfect scaling. The limit's own figure is how far this machine's two vCPUs scale at "
        "all. `u64` keys, present, one guard per lookup:\n",
        table(["key", "size"] + maps, rows) + "\n",
        verdict_line])


def section_read_under_write(entries, lookups):
    if not entries:
        return ""
    lvals = lookup_values(lookups)
    maps = maps_in(entries)
    vals = {}
    for f, o, r in entries:
        m, key, size, every = f[:4]
        vals.setdefault((key, size, every.split(":")[1]), {})[m] = r
    rows_r, rows_w = [], []
    for k in sorted(vals, key=lambda k: (k[0] != "u64", int(k[2]))):
        key, size, every = k
        lim = lvals.get((key, size, "hit", "guard1", 1), {}).get("limit")
        v = vals[k]
        rows_r.append([key, every] + [cell(v[m].get("items_per_second"), lim) if m in v else "–"
                                      for m in maps])
        rows_w.append([key, every] + [rate(v[m].get("writer_ops_per_s")) if m in v else "–"
                                      for m in maps])
    return "\n".join([
        "## Readers under a writer\n",
        "One reader thread looks up present keys of the 1M map (one guard per lookup) while one "
        "writer thread overwrites existing keys flat out. `every`: ours publishes every n "
        "operations; the lock-based maps hold their exclusive lock for n operations; TBB, "
        "libcuckoo and liburcu have no batches (n = 1 only). Reader rate, with the ratio to the "
        "limit's lookups of the same keys with no writer (1 thread):\n",
        table(["key", "every"] + maps, rows_r) + "\n",
        "Writer operations per second during the same runs:\n",
        table(["key", "every"] + maps, rows_w) + "\n"])


def paired_ratio_table(entries, header):
    """A table of the `ratio` counters of a paired scenario whose names are
    <scenario>/<map>/<key>/<size>/<param>:<n>: one row per key, size and n (header names the
    three columns), one column per map; u64 first, then by size and n."""
    maps = maps_in(entries)
    vals = {}
    for f, o, r in entries:
        m, key, size, param = f[:4]
        vals.setdefault((key, size, int(param.split(":")[1])), {})[m] = r.get("ratio")
    rows = []
    for k in sorted(vals, key=lambda k: (k[0] != "u64", k[1] != "1K", k[2])):
        rows.append(list(k) + [f"{vals[k][m]:.2f}×" if vals[k].get(m) is not None else "–" for m in maps])
    return table(header + maps, rows)


def section_read_under_write_pair(entries):
    if not entries:
        return ""
    return "\n".join([
        "### Readers under a writer, paired with the limit\n",
        "`read_under_write_pair`: every iteration runs the same lookups (present keys, 1M map, "
        "one guard each) twice, on the limit with the writer parked and on our map while the "
        "writer streams overwrites and publishes every `every` of them, the order alternating; "
        "each phase's clock starts once the writer is parked or running. The figure is the "
        "geometric mean of the two orders' medians of the limit's phase time over ours: the reader's rate under "
        "the writer as a fraction of the 1-thread limit's (the target is ≥ 0.5× at every "
        "1024):\n",
        paired_ratio_table(entries, ["key", "size", "every"]) + "\n"])


def batch_values(entries):
    """{(key, size, mix, batch, threads): {variant: ratio to the limit's scalar loop}}."""
    vals = {}
    for f, o, r in entries:
        variant, key, size, mix, batch = f[:5]
        vals.setdefault((key, size, mix, int(batch[1:]), o["threads"]), {})[variant] = r.get("ratio")
    return vals


def section_batch(entries, ctx):
    """batch_pair: find_many and get_many against the limit's scalar loop and its best batched
    loop, per batch size; the verdict on the targets (16-64 keys per call: find_many >= 1.0x the
    scalar limit and >= 0.95x limit_batched; get_many >= 0.9x find_many)."""
    if not entries:
        return ""
    vals = batch_values(entries)
    order = {"1K": 0, "1M": 1, "16M": 2}
    keys = sorted(vals, key=lambda k: (k[0] != "u64", order.get(k[1], 9), k[2] != "hit", k[4], k[3]))
    rows, misses = [], []
    for k in keys:
        v = vals[k]
        fm, lb, gm = v.get("find_many"), v.get("limit_batched"), v.get("get_many")
        vs_batched = fm / max(lb, 1.0) if fm and lb else None
        rows.append([k[0], k[1], k[2], k[4], k[3]] +
                    [f"{x:.2f}×" if x else "–" for x in (lb, fm, vs_batched, gm, gm / fm if gm and fm else None)])
        if 16 <= k[3] <= 64 and fm:
            if fm < 1.0:
                misses.append(f"{k[0]} {k[1]} {k[2]} b{k[3]} {k[4]}T: find_many {fm:.2f}× the scalar limit")
            if vs_batched is not None and vs_batched < 0.95:
                misses.append(f"{k[0]} {k[1]} {k[2]} b{k[3]} {k[4]}T: find_many {vs_batched:.2f}× the best loop")
            if gm and gm / fm < 0.9:
                misses.append(f"{k[0]} {k[1]} b{k[3]} {k[4]}T: get_many {gm / fm:.2f}× find_many")
    l3 = ctx.get("l3_cache_bytes")
    l3_note = f" This host's L3: {int(l3) >> 20} MiB." if l3 and l3.isdigit() and int(l3) > 0 else ""
    return "\n".join([
        "## Many keys at once (batched lookups)\n",
        "`batch_pair`: every iteration runs the same lookups twice, as the limit's scalar loop (one "
        "unsynchronized absl find per key) and as the variant in calls of B keys, the order "
        "alternating, every thread in the same phase. Each figure is the geometric mean of the two orders' medians of the "
        "limit's phase time over the variant's: its rate as a fraction of the scalar limit's. "
        "`limit_batched` is the best batched loop over the unsynchronized table found here "
        "(each key's lines prefetched 16 keys ahead of its find); `find_many` is ours, one guard per "
        "call; `vs best` is find_many over the better of the two limits; `get_many` copies the "
        "values out." + l3_note + "\n",
        table(["key", "size", "mix", "threads", "B", "limit_batched", "find_many", "vs best", "get_many",
               "get/find"], rows) + "\n",
        "Targets at 16-64 keys per call (find_many ≥ 1.0× the scalar limit and ≥ 0.95× the best "
        "loop; get_many ≥ 0.9× find_many): " +
        (verdict(True) if not misses else verdict(False) + " — " + "; ".join(misses)) + "\n"])


def section_write(entries):
    if not entries:
        return ""
    maps = maps_in(entries)
    vals = {}
    for f, o, r in entries:
        m, key, size, batch = f[:4]
        vals.setdefault((key, size, int(batch.split(":")[1])), {})[m] = r.get("items_per_second")
    rows = []
    for k in sorted(vals, key=lambda k: (k[0] != "u64", k[1] != "1K", k[2])):
        key, size, batch = k
        lim = vals[k].get("limit") or vals.get((key, size, 1), {}).get("limit")
        rows.append([key, size, batch] + [cell(vals[k].get(m), lim) for m in maps])
    return "\n".join([
        "## Writer cost\n",
        "Overwrites of existing keys per second, one thread, no readers, including making them "
        "visible: ours publishes once per batch, the lock-based maps lock once per batch, the "
        "others make each operation visible on its own (batch 1 only). Ratio to the limit's "
        "`insert_or_assign` of the same keys into one absl map, run through the same batch "
        "loop:\n",
        table(["key", "size", "batch"] + maps, rows) + "\n"])


def section_write_pair(entries):
    if not entries:
        return ""
    return "\n".join([
        "### Writer paired with the limit\n",
        "`write_pair`: every iteration overwrites the same keys (at least 16K of them) on the "
        "limit and on our map, one phase after the other, the order alternating, ours "
        "publishing every `batch`; the figure is the geometric mean of the two orders' medians of the limit's "
        "phase time over ours: our write rate as a fraction of the limit's, with the noise "
        "between separate benchmarks taken out (the writer target, ≥ 0.45× at batches of 64 "
        "and more, is read here):\n",
        paired_ratio_table(entries, ["key", "size", "batch"]) + "\n"])


def section_publish(entries):
    if not entries:
        return ""
    rows = []
    for f, o, r in sorted(entries, key=lambda e: (e[0][1] != "u64", e[0][0] != "lr_seq_cst", e[0][3])):
        m, key, size, readers = f[:4]
        rows.append([m, key, size, readers.split(":")[1], ns(r.get("p50_ns")), ns(r.get("p99_ns")),
                     ns(r.get("p999_ns")), rate(r.get("items_per_second"), "/s"),
                     rate(r.get("reader_lookups_per_s"), "/s") if "reader_lookups_per_s" in r else "–",
                     r.get("label", "")])
    return "\n".join([
        "## publish() latency\n",
        "One overwrite queued, then `publish()` timed alone, many times; percentiles of those "
        "samples (median over the repetitions). With one reader thread doing back-to-back "
        "lookups, one guard each, the writer may wait for it to leave, and in asymmetric mode "
        "its membarrier interrupts the reader's CPU.\n",
        table(["map", "key", "size", "readers", "p50", "p99", "p99.9", "publishes", "reader lookups",
               "label"], rows) + "\n"])


def section_memory(entries):
    if not entries:
        return ""
    layouts = maps_in(entries)
    layouts = [l for l in ("absl", "lr_one_batch", "lr_batches_1024") if l in layouts]
    vals = {}
    for f, o, r in entries:
        layout, key, value, n = f[:4]
        vals.setdefault((key, value, n), {})[layout] = r.get("bytes_per_entry")
    rows = []
    for k in sorted(vals, key=lambda k: (k[1] != "8B", k[1], k[0] != "u64")):
        v = vals[k]
        ref = v.get("absl")
        rows.append(list(k) + [f"{v[l]:.0f} ({v[l] / ref:.2f}×)" if (l in v and ref) else "–"
                               for l in layouts])
    return "\n".join([
        "## Memory per entry\n",
        "Heap bytes per entry after building the map, one run (glibc mallinfo2 in-use delta, malloc "
        "headers included), ours after two publishes (both copies full), with the ratio to one "
        "absl::flat_hash_map. `lr_one_batch`: all entries inserted in one batch; "
        "`lr_batches_1024`: published every 1024 inserts. Values: `8B` uint64_t; `1KiB` "
        "std::array<char, 1024> (an entry above `max_inline_entry`: ours stores it once, shared "
        "by both copies); `1KiB_str` a 1024-char std::string (a small entry owning a heap block: "
        "each copy has its own); `1KiB_str_shared` the same string in a map whose traits set "
        "`max_inline_entry = 0`, so that every entry is stored once, in a node both copies share.\n",
        table(["key", "value", "entries"] + layouts, rows) + "\n"])


# ----------------------------------------------------------------------------------------------
# leftright::cache (bench_cache.cpp)

CACHE_ORDER = ["lr_cache", "lr_cache_peek", "lr_cache_get_put", "mutex_lru", "shared_mutex", "tbb_lru"]
CACHE_NOTES = {
    "lr_cache": "leftright::cache (get; get_or_load in the herd)",
    "lr_cache_peek": "the same leftright::cache through peek() (no access recorded, no hit counted): "
                     "what get()'s bookkeeping costs beside the lookup",
    "lr_cache_get_put": "leftright::cache through get, and on a miss the load and put (no coalescing)",
    "mutex_lru": "std::mutex + std::list + absl::flat_hash_map of list iterators; a hit moves its "
                 "node to the front; a miss loads without the lock, then puts",
    "shared_mutex": "std::shared_mutex + absl::flat_hash_map, no eviction",
    "tbb_lru": "oneTBB concurrent_lru_cache (a handle per get; loads through its value function, once)",
}
CACHE_GET_TARGET = 0.8    # cache::get >= 0.8x shared_map::get on the same keys
CACHE_LRU_TARGET = 5.0    # cache::get >= 5x the mutex LRU at 2 threads
HERD_SERVED_TARGET = 1.5  # a herd served within 1.5x one load's time (one load + small overhead)


def cache_subjects(entries):
    found = {f[0] for f, _, _ in entries}
    return [m for m in CACHE_ORDER if m in found] + sorted(found - set(CACHE_ORDER))


def cache_get_rows(pairs):
    """cache_pair: one row per size and threads, every subject's paired ratio to shared_map::get
    (and its rate); the targets' verdicts."""
    subjects = cache_subjects(pairs)
    vals = {}
    for f, o, r in pairs:
        subject, key, size = f[:3]
        vals.setdefault((key, size, o["threads"]), {})[subject] = r
    rows, targets = [], []
    for k in sorted(vals, key=lambda k: (k[0] != "u64", k[1] != "1K", k[2])):
        v = vals[k]
        ratio = {s: v[s].get("ratio") for s in v}
        base = (v.get("lr_cache") or next(iter(v.values()))).get("shared_map_thread_lookups_per_s")
        lr, lru = ratio.get("lr_cache"), ratio.get("mutex_lru")
        over = lr / lru if lr and lru else None
        rows.append([k[1], k[2], rate(base, "/s")] +
                    [f"{ratio[s]:.2f}× ({rate(v[s].get('thread_lookups_per_s'), '/s')})" if ratio.get(s) else "–"
                     for s in subjects] + [f"{over:.1f}×" if over else "–"])
        if lr:
            targets.append([f"cache::get ≥ {CACHE_GET_TARGET}× shared_map::get ({k[1]}, {k[2]} thread"
                            f"{'s' if k[2] > 1 else ''})", f"{lr:.2f}×", verdict(lr >= CACHE_GET_TARGET)])
        if over and k[2] == 2:
            targets.append([f"cache::get ≥ {CACHE_LRU_TARGET:.0f}× the mutex LRU ({k[1]}, 2 threads)",
                            f"{over:.1f}×", verdict(over >= CACHE_LRU_TARGET)])
    header = ["size", "threads", "shared_map::get (per thread)"] + subjects + ["lr_cache / mutex_lru"]
    return header, rows, targets


def cache_herd_rows(herds):
    """cache_herd: one row per subject; the targets' verdicts for lr_cache."""
    rows, targets = [], []
    by_subject = {f[0]: r for f, o, r in herds}
    for s in cache_subjects(herds):
        r = by_subject[s]
        loads, over = r.get("loads_per_herd"), r.get("served_over_load")
        rows.append([s, f"{loads:.1f}" if loads is not None else "–", f"{r.get('served_ms', 0):.1f} ms",
                     f"{r.get('load_ms', 0):.1f} ms", f"{over:.2f}×" if over else "–"])
        if s == "lr_cache" and loads is not None:
            targets.append(["get_or_load herd of 64: one load", f"{loads:.1f} loads per herd", verdict(loads == 1)])
            if over:
                targets.append([f"get_or_load herd of 64: all served within {HERD_SERVED_TARGET}× one load",
                                f"{over:.2f}×", verdict(over <= HERD_SERVED_TARGET)])
    return rows, targets


def section_cache(pairs, herds):
    if not pairs and not herds:
        return ""
    header, get_rows, targets = cache_get_rows(pairs)
    herd_rows, herd_targets = cache_herd_rows(herds)
    targets += herd_targets
    subjects = cache_subjects(pairs + herds)
    out = ["## Cache\n",
           "Caches: " + "; ".join(f"`{s}`: {CACHE_NOTES.get(s, s)}" for s in subjects) + ".\n"]
    if targets:
        out += ["### Targets\n", table(["target", "figure", "verdict"], targets) + "\n"]
    if get_rows:
        out += ["### Hits\n",
                "`cache_pair`: a cache of N entries at capacity (every key present), `u64` keys "
                "looked up with Zipfian popularity (theta 0.99), all hits. Every iteration runs the "
                "same lookups through `shared_map::get` on the same entries and through the cache, "
                "one phase after the other, the order alternating, every thread in the same phase; "
                "each cell is the geometric mean of the two orders' medians of shared_map's phase time over the "
                "cache's (the cache's rate as a fraction of shared_map's), with the cache's lookups "
                "per second per thread beside it (averaged over the threads, not summed: on a loaded "
                "machine the two threads of a phase need not have run at once; quote the ratios). Last column: ours over the mutex LRU (two "
                "ratios to the same baseline).\n",
                table(header, get_rows) + "\n"]
    if herd_rows:
        out += ["### A thundering herd\n",
                "`cache_herd`: 64 threads, released together by a latch, miss on one fresh key "
                "whose loader sleeps 10 ms; each row is over 10 herds. `served`: from the release "
                "until the last of the 64 has its value (median); `one load`: the loader's own "
                "time (median); last column: served over one load (median of the herds'). A "
                "cache that coalesces loads once per herd.\n",
                table(["cache", "loads per herd", "served", "one load", "served / one load"], herd_rows) + "\n"]
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# Durability (durable.json)

STORE_ORDER = [("leftright", "memory"), ("leftright", "none"), ("leftright", "async"),
               ("leftright", "sync"), ("pwrite_fdatasync", "append"),
               ("pwrite_fdatasync", "fallocate"), ("pwrite_fdatasync", "overwrite"),
               ("lmdb", "sync"), ("lmdb", "nosync"), ("sqlite_wal", "full"),
               ("sqlite_wal", "normal")]
SYNC_TARGET = 1.2      # leftright/sync commit cost <= 1.2 x pwrite + fdatasync of the same bytes
NONE_TARGET = 0.8      # leftright/none write rate >= 0.8 x the in-memory map's
READ_TARGET = 0.95     # durable map's lookup rate = the in-memory map's, within 5 %
RECOVERY_TARGET = 10e6  # entries/s


def real_ns(r):
    """A run's real_time in nanoseconds, whatever its time_unit."""
    scale = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}.get(r.get("time_unit", "ns"), 1)
    return r.get("real_time", 0) * scale


def verdict(ok):
    return "**met**" if ok else "**missed**"


def durable_run_line(ctx):
    load = ctx.get("load_avg")
    bits = [f"run {ctx.get('date', '?')}"]
    if load:
        bits.append("load average at the start " + ", ".join(f"{x:.2f}" for x in load))
    if ctx.get("suite_seconds"):
        bits.append(f"{ctx['suite_seconds']} s")
    if ctx.get("command"):
        bits.append(f"`{ctx['command']}`")
    if ctx.get("built_from"):
        bits.append(f"built from {ctx['built_from']}")
    return "; ".join(bits)


def section_durable(ctx, idx):
    commits = idx.get("durable_commit", [])
    pairs = idx.get("durable_pair", [])
    reads = idx.get("durable_read", [])
    recovery = idx.get("durable_recovery", [])
    if not (commits or pairs or reads or recovery):
        return ""
    out = ["## Durability\n",
           "From `durable.json` (" + durable_run_line(ctx) + "). Files on **" +
           ctx.get("durable_fs", "?") + "** (`" + ctx.get("durable_dir", "?") + "`). Stores "
           "compiled in: " + ctx.get("durable_stores", "?") + ". Every figure is the median of "
           "the repetitions; every ratio has its baseline from the same run.\n"]

    # Targets first.
    tgt = []
    pv = {}
    for f, o, r in pairs:
        target, key, arg = f[:3]  # arg: batch:<n>, or a map size for the read pair
        pv[(target, int(arg.split(":")[1]) if arg.startswith("batch:") else arg)] = r
    for floor in ("fallocate", "overwrite"):
        for batch in (1, 64, 1024):
            r = pv.get((f"sync_vs_{floor}", batch))
            if not r:
                continue
            p50r, meanr = r.get("p50_ratio"), r.get("mean_ratio")
            tgt.append([f"`sync` commit ≤ {SYNC_TARGET}× pwrite+fdatasync ({floor} file)", batch,
                        f"{ns(r.get('p50_ns'))} vs {ns(r.get('base_p50_ns'))}",
                        f"{p50r:.2f}×", f"{meanr:.2f}×", verdict(p50r <= SYNC_TARGET)])
    for batch in (1, 64, 1024):
        r = pv.get(("none_vs_memory", batch))
        if not r:
            continue
        p50r, meanr = r.get("p50_ratio"), r.get("mean_ratio")
        tgt.append([f"`none` write rate ≥ {NONE_TARGET}× in-memory map", batch,
                    f"{ns(r.get('p50_ns'))} vs {ns(r.get('base_p50_ns'))}",
                    f"{1 / p50r:.2f}× rate" if p50r else "–",
                    f"{1 / meanr:.2f}× rate" if meanr else "–",
                    verdict(meanr and 1 / meanr >= NONE_TARGET)])
    for size in ("1K", "1M"):
        r = pv.get(("read_vs_memory", size))
        if not r or not r.get("rate_ratio"):
            continue
        ratio = r["rate_ratio"]
        c = pv.get(("read_control", size), {}).get("rate_ratio")
        # Met if within 5 %, or no further from 1.00 than two identical in-memory maps were.
        spread = max(1 - READ_TARGET, abs(c - 1) if c else 0)
        tgt.append([f"reads through open_map's reader = make_map's ({size} map, hits)", "–",
                    f"{rate(r.get('lookups_per_s'), '/s')} vs {rate(r.get('base_lookups_per_s'), '/s')}",
                    f"{ratio:.2f}× rate" + (f" (control {c:.2f}×)" if c else ""), "–",
                    verdict(abs(ratio - 1) <= spread)])
    # The floors (durable_recovery/floor/tables, tables_2t): the two tables built from memory in
    # a fresh process, on one thread and on two, the least any recovery does; the same run, so
    # the ratios survive a slow host. leftright: open_map's default (two threads for a large
    # map on two cores); leftright_1t: recovery_threads = 1.
    floors = {(f[1], f[3]): r for f, o, r in recovery if f[0] == "floor"}  # by (kind, map size)
    order = lambda e: (e[0][3] != "1M", e[0][0] != "leftright", e[0][1] != "snapshot")
    for f, o, r in sorted(recovery, key=order):
        system, kind, key, size = f[:4]
        eps = r.get("items_per_second")
        if eps is None or system == "floor":
            continue
        threads = int(r.get("threads", 1) or 1)
        ratios = []
        for floor_kind, label in (("tables", "1-thread floor"), ("tables_2t", "2-thread floor")):
            floor = floors.get((floor_kind, size))
            if floor and floor.get("items_per_second"):
                ratios.append(f"{eps / floor['items_per_second']:.2f}× the {label}'s "
                              f"{floor['items_per_second'] / 1e6:.1f} M/s")
        floor1 = floors.get(("tables", size))
        vs = f" vs floor {ns(real_ns(floor1))}" if floor1 else ""
        tgt.append([f"recovery ≥ 10 M entries/s ({'snapshot load' if kind == 'snapshot' else 'log replay'}, "
                    f"{size} entries, {threads} thread{'s' if threads > 1 else ''})", "–",
                    f"{ns(real_ns(r))} per open{vs}",
                    f"{eps / 1e6:.1f} M entries/s" + (f" ({'; '.join(ratios)})" if ratios else ""),
                    "–", verdict(eps >= RECOVERY_TARGET)])
    if tgt:
        out.append("### Targets\n")
        out.append(
            "The sync and none targets come from paired runs (`durable_pair/*`): the store and its "
            "baseline commit the same batches alternately in one loop, each commit timed alone, so "
            "both see the same disk and the same competing load. Cost ratios are store / baseline "
            "(p50 of the commit latencies, and mean = the inverse of the throughput ratio); a "
            "rate ratio is the inverse. The `sync` verdict is on the p50, the `none` verdict on the "
            "throughput. Reads (`durable_pair/read_vs_memory`): the same 256 present keys looked up through "
            "each map's reader in turn, one guard per lookup, one thread (the ratio is a median "
            "over the repetitions, as are the rates beside it, so the two need not agree). The "
            "control (`durable_pair/read_control`) does the same with two make_map() maps: its "
            "distance from 1.00× is what memory placement and noise alone give. Verdict: within "
            "5 %, or no further from 1.00× than the control. Recovery: open_map() alone, "
            "files in the page cache.\n")
        out.append(table(["target", "batch", "store vs baseline (p50)", "ratio (p50)", "ratio (mean)",
                          "verdict"], tgt) + "\n")

    # A sync commit cheaper than the floor's fdatasync cannot have synced: say so loudly.
    for batch in (1, 64, 1024):
        ours = next((r for f, o, r in commits if f[:2] == ["leftright", "sync"] and f[3] == f"batch:{batch}"), None)
        floor = next((r for f, o, r in commits if f[:2] == ["pwrite_fdatasync", "overwrite"]
                      and f[3] == f"batch:{batch}"), None)
        if ours and floor and ours.get("p50_ns") and floor.get("p50_ns") and ours["p50_ns"] < 0.2 * floor["p50_ns"]:
            out.append(f"**Warning: `leftright/sync` commits of batch {batch} took {ns(ours['p50_ns'])} "
                       f"(p50), under a fifth of one fdatasync ({ns(floor['p50_ns'])}): the build "
                       "measured does not sync at publish(). These figures are not a sync "
                       "measurement.**\n")

    # Side by side.
    if commits:
        vals = {}
        for f, o, r in commits:
            system, mode, key, batch = f[:4]
            vals[(system, mode, int(batch.split(":")[1]))] = r
        order = STORE_ORDER + sorted({(s, m) for s, m, _ in vals} - set(STORE_ORDER))
        rows = []
        for batch in sorted({b for _, _, b in vals}):
            floor = vals.get(("pwrite_fdatasync", "fallocate", batch), {}).get("p50_ns")
            for system, mode in order:
                r = vals.get((system, mode, batch))
                if not r:
                    continue
                p50 = r.get("p50_ns")
                rows.append([batch, system, mode, ns(p50), ns(r.get("p99_ns")), ns(r.get("p999_ns")),
                             rate(r.get("commits_per_s"), "/s"), rate(r.get("items_per_second"), "/s"),
                             f"{p50 / floor:.2f}×" if (p50 and floor) else "–"])
        out += ["### Commit latency and throughput\n",
                "One commit = `batch` overwrites of existing keys in a 64K-entry store (u64 key, u64 "
                "value), made durable as the mode promises: ours publishes one batch (one log "
                "record), LMDB commits one write transaction, SQLite (WAL mode) one transaction of "
                "prepared upserts; the `pwrite_fdatasync` rows write exactly the bytes our log "
                "record takes and fdatasync them, into a growing file (`append`), a file "
                "preallocated like our segments (`fallocate`), or one written beforehand "
                "(`overwrite`). Each commit, operations included, timed alone; each store measured "
                "in its own run of at least 0.5 s. Our stores run with default options (64 MiB "
                "segments, automatic checkpoint every 256 MiB of log). Last column: p50 over the "
                "p50 of `pwrite_fdatasync/fallocate` at the same batch size (these are separate "
                "runs; the paired ratios above are the ones to quote).\n",
                table(["batch", "system", "mode", "p50", "p99", "p99.9", "commits/s", "records/s",
                       "p50 / fdatasync"], rows) + "\n"]

    if reads:
        rows = []
        for f, o, r in sorted(reads, key=lambda e: (e[0][3], e[0][1] != "memory")):
            system, mode, key, size = f[:4]
            rows.append([size, "open_map (durability::sync)" if mode == "sync" else "make_map",
                         rate(r.get("items_per_second"), "/s")])
        out += ["### Reads\n", table(["map size", "map from", "lookups/s"], rows) + "\n"]

    if recovery:
        rows = []
        for f, o, r in sorted(recovery, key=lambda e: (e[0][3] != "1M", e[0][1] != "snapshot")):
            system, kind, key, size = f[:4]
            eps = r.get("items_per_second")
            rows.append([kind, size, ns(real_ns(r)),
                         f"{eps / 1e6:.1f} M/s" if eps else "–",
                         f"{r['recovery_report_ms']:.1f} ms" if "recovery_report_ms" in r else "–",
                         f"{r.get('cpu_ms_per_open', 0):.1f} ms",
                         # entries per open / CPU seconds per open
                         f"{eps * real_ns(r) / (r['cpu_ms_per_open'] * 1e6) / 1e6:.1f} M/s"
                         if (eps and r.get("cpu_ms_per_open")) else "–",
                         f"{r['records_replayed']:.0f}" if "records_replayed" in r else "–"])
        out += ["### Recovery\n",
                "open_map() of a directory holding 1M (or 16M, a map in DRAM) `uint64_t` pairs: after a checkpoint "
                "(`snapshot`: one snapshot file and an empty log segment) or with the log alone "
                "(`log`: 1024 records of 1024 inserts). Includes what every open does: lock, scan "
                "the written part of each (64 MiB, preallocated) log segment, then continue in "
                "the newest one if it is empty or start a fresh one (create, preallocate, sync "
                "its header and the directory). The files were just "
                "written, so they are in the page cache (a process restart, not a reboot). "
                "`tables` is the floor: the same entries inserted from memory into a reserved "
                "table of the map's own type, which is then copied (a map has two copies), in a "
                "fresh process like the others; no file is read. "
                "`recovery report` is open_map's own measure (recovery_report::duration, the last "
                "open); `CPU` is the process's CPU time in open_map(), all its threads (a two-thread "
                "open can use more CPU time than wall time; below the wall time, the rest is "
                "waiting, for the disk or for a core on a busy machine), and `entries/s on CPU` "
                "the rate that CPU time alone would give.\n",
                table(["from", "entries", "open_map()", "entries/s", "recovery report", "CPU",
                       "entries/s on CPU", "records replayed"], rows) + "\n"]
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# Machine, charts


def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def compiler(build_dir):
    cxx = None
    cache = os.path.join(build_dir or "", "CMakeCache.txt")
    if build_dir and os.path.exists(cache):
        with open(cache) as f:
            for line in f:
                if line.startswith("CMAKE_CXX_COMPILER:"):
                    cxx = line.split("=", 1)[1].strip()
    cxx = cxx or shutil.which("c++") or "c++"
    return (run([cxx, "--version"]).splitlines() or [cxx])[0]


def machine(ctx, build_dir, elapsed, command):
    lscpu = run(["lscpu"])
    model = re.search(r"^Model name:\s*(.+)$", lscpu, re.M)
    cores = re.search(r"^CPU\(s\):\s*(.+)$", lscpu, re.M)
    hyp = re.search(r"^Hypervisor vendor:\s*(.+)$", lscpu, re.M)
    caches = ", ".join(f"L{c['level']} {c['type'][0].lower() if c['type'] != 'Unified' else ''}"
                       f"{c['size'] // 1024} KiB" for c in ctx.get("caches", []))
    pkgs = []
    for p in ("libabsl-dev", "libbenchmark-dev", "libtbb-dev", "libcuckoo-dev", "liburcu-dev",
              "liblmdb-dev", "libsqlite3-dev"):
        v = run(["dpkg-query", "-W", "-f=${Version}", p])
        if v:
            pkgs.append(f"{p} {v}")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rev = run(["git", "-C", repo, "rev-parse", "--short", "HEAD"])
    dirty = run(["git", "-C", repo, "status", "--porcelain", "--", "include"])
    load = ctx.get("load_avg")
    lines = [
        f"- CPU: {model.group(1) if model else platform.processor()}, "
        f"{cores.group(1) if cores else ctx.get('num_cpus')} CPUs"
        + (f" ({hyp.group(1)} guest)" if hyp else "")
        + (f", {ctx['mhz_per_cpu']} MHz" if ctx.get("mhz_per_cpu") else "")
        + (f"; caches {caches}" if caches else ""),
        f"- Kernel: {platform.release()}",
        f"- Compiler: {compiler(build_dir)} (-O2)",
        # What the suite was built from, as scripts/bench recorded it; else (older results) the
        # working tree now.
        f"- leftright: built from {ctx['built_from']}" if ctx.get("built_from") else
        (f"- leftright: commit {rev}" + (" with uncommitted changes under include/" if dirty else "")
         if rev else ""),
        f"- Libraries: {', '.join(pkgs)}" if pkgs else "- Libraries: (dpkg-query unavailable)",
        f"- Date: {ctx.get('date', datetime.datetime.now().isoformat())}",
        f"- Load average when the suite started: {', '.join(f'{x:.2f}' for x in load)}" if load else "",
        f"- Asymmetric variant's reader_sync in force: `{ctx.get('lr_asym_sync_mode', '?')}`",
        f"- Peers compiled in: {ctx.get('peers', '?')}",
        f"- Google Benchmark library build type: {ctx.get('library_build_type', '?')} "
        "(Debian's; it does not affect the code measured)",
    ]
    elapsed = elapsed or ctx.get("suite_seconds")
    command = command or ctx.get("command")
    if elapsed:
        lines.append(f"- Suite wall time: {float(elapsed):.0f} s")
    if command:
        lines.append(f"- Command: `{command.strip()}`")
    return "## Machine\n\n" + "\n".join(l for l in lines if l) + "\n"


def linespoints(dat, titles):
    """A gnuplot plot list: column i + 2 of dat against column 1, one line per title."""
    return ", ".join(f"'{dat}' using 1:{i + 2} with linespoints lw 2 title '{t}'" for i, t in enumerate(titles))


def plot(gp, script, tmp, png):
    """Runs gnuplot on script (its lines, the multiplot still open); [png's file name] if made."""
    gp_file = os.path.join(tmp, os.path.basename(png) + ".gp")
    with open(gp_file, "w") as f:
        f.write("\n".join(script + ["unset multiplot"]) + "\n")
    subprocess.run([gp, gp_file], check=False)
    return [os.path.basename(png)] if os.path.exists(png) else []


def charts(lookups, out_dir):
    gp = shutil.which("gnuplot")
    if not gp or not lookups:
        return []
    vals = lookup_values(lookups)
    maps = maps_in(lookups)
    made = []
    with tempfile.TemporaryDirectory() as tmp:
        # Reader scaling: lookups/s by thread count, one line per map, one panel per key/size.
        panels = []
        for key in ("u64", "str16"):
            for size in ("1K", "1M"):
                dat = os.path.join(tmp, f"scale_{key}_{size}.dat")
                with open(dat, "w") as f:
                    f.write("# threads " + " ".join(maps) + "\n")
                    for t in (1, 2):
                        v = vals.get((key, size, "hit", "guard1", t), {})
                        f.write(f"{t} " + " ".join(f"{(v.get(m) or float('nan')) / 1e6:.4f}" for m in maps) + "\n")
                panels.append((key, size, dat))
        png = os.path.join(out_dir, "reader_scaling.png")
        script = ["set terminal pngcairo size 1400,1000 font 'sans,10'", "set termoption noenhanced",
                  f"set output '{png}'",
                  "set multiplot layout 2,2 title 'Reader scaling: hits, one guard per lookup, no writer'",
                  "set xrange [0.8:2.2]", "set xtics 1", "set xlabel 'reader threads'",
                  "set ylabel 'M lookups/s (all threads)'", "set key outside right", "set grid ytics",
                  "set logscale y"]
        for key, size, dat in panels:
            script += [f"set title '{key} keys, {size} map'", f"plot {linespoints(dat, maps)}"]
        made += plot(gp, script, tmp, png)

        # Lookups by map size: per map, hits and 10% misses, one panel per key type and size.
        png = os.path.join(out_dir, "lookup_by_size.png")
        script = ["set terminal pngcairo size 1400,1000 font 'sans,10'", "set termoption noenhanced",
                  f"set output '{png}'",
                  "set multiplot layout 2,2 title 'Lookups by map size: 1 thread, one guard per "
                  "lookup, no writer'",
                  "set style data histogram", "set style histogram cluster gap 1",
                  "set style fill solid 0.8 border -1", "set boxwidth 0.9", "set grid ytics",
                  "set ylabel 'M lookups/s'", "set key top right", "set xtics rotate by -30",
                  "set yrange [0:*]"]
        for key in ("u64", "str16"):
            for size in ("1K", "1M"):
                mixes = [(mix, title) for mix, title in (("hit", "all hits"), ("miss10", "10% misses"))
                         if any(vals.get((key, size, mix, "guard1", 1), {}).get(m) for m in maps)]
                if not mixes:
                    continue
                dat = os.path.join(tmp, f"size_{key}_{size}.dat")
                with open(dat, "w") as f:
                    f.write("# map " + " ".join(mix for mix, _ in mixes) + "\n")
                    for m in maps:
                        row = [vals.get((key, size, mix, "guard1", 1), {}).get(m) for mix, _ in mixes]
                        f.write(m + " " + " ".join(f"{(x or 0) / 1e6:.4f}" for x in row) + "\n")
                plots = ", ".join((f"'{dat}' using {i + 2}:xtic(1)" if i == 0 else f"'' using {i + 2}") +
                                  f" title '{title}'" for i, (_, title) in enumerate(mixes))
                script += [f"set title '{key} keys, {size} map'", f"plot {plots}"]
        made += plot(gp, script, tmp, png)
    return made


def batch_chart(entries, out_dir):
    """batched_lookups.png: each batched variant's rate over the limit's scalar loop by batch size
    (1 thread, hits), one panel per key type and map size; 1.0 is the scalar limit."""
    gp = shutil.which("gnuplot")
    if not gp or not entries:
        return []
    vals = batch_values(entries)
    variants = ("limit_batched", "find_many", "get_many")
    cells = [(key, size) for key in ("u64", "str16") for size in ("1K", "1M", "16M")
             if any(k[0] == key and k[1] == size and k[2] == "hit" and k[4] == 1 for k in vals)]
    if not cells:
        return []
    png = os.path.join(out_dir, "batched_lookups.png")
    with tempfile.TemporaryDirectory() as tmp:
        script = ["set terminal pngcairo size 1500,900 font 'sans,10'", "set termoption noenhanced",
                  f"set output '{png}'",
                  f"set multiplot layout 2,{(len(cells) + 1) // 2} title 'Batched lookups: rate over "
                  "the limit scalar loop (1.0), 1 thread, hits'",
                  "set logscale x 2", "set xlabel 'keys per call'", "set ylabel 'x the scalar limit'",
                  "set grid ytics", "set key bottom right", "set yrange [0:*]"]
        for key, size in cells:
            dat = os.path.join(tmp, f"batch_{key}_{size}.dat")
            sizes = sorted({k[3] for k in vals if k[0] == key and k[1] == size and k[2] == "hit" and k[4] == 1})
            with open(dat, "w") as f:
                f.write("# B " + " ".join(variants) + "\n")
                for b in sizes:
                    v = vals.get((key, size, "hit", b, 1), {})
                    f.write(f"{b} " + " ".join(f"{v[x]:.4f}" if v.get(x) else "nan" for x in variants) + "\n")
            script += [f"set title '{key} keys, {size} map'",
                       f"plot {linespoints(dat, variants)}, 1 with lines dt 2 lc 'black' title 'limit'"]
        return plot(gp, script, tmp, png)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("out_dir")
    ap.add_argument("--durable", help="the durability benchmarks' JSON (default: durable.json "
                    "beside RESULTS_JSON, if there)")
    ap.add_argument("--build-dir")
    ap.add_argument("--elapsed")
    ap.add_argument("--command")
    a = ap.parse_args()

    ctx, runs = load(a.results)
    durable_path = a.durable or os.path.join(os.path.dirname(a.results) or ".", "durable.json")
    dctx, druns = load(durable_path)
    if not runs and not druns:
        print(f"report.py: no benchmark results in {a.results} or {durable_path}", file=sys.stderr)
        return 1
    idx = index(runs)
    didx = index({n: r for n, r in druns.items() if n.startswith("durable_")})
    lookups = idx.get("lookup", [])
    os.makedirs(a.out_dir, exist_ok=True)
    made = charts(lookups, a.out_dir)
    made += batch_chart(idx.get("batch_pair", []), a.out_dir)

    maps_seen = sorted({m for e in idx.get("lookup", []) + idx.get("write", []) for m in [e[0][0]]},
                       key=lambda m: MAP_ORDER.index(m) if m in MAP_ORDER else 99)
    parts = [
        "# leftright benchmark results\n",
        "Generated by `scripts/bench` (bench/report.py) from `results.json` (the in-memory "
        "suite; console output in `console.txt`) and `durable.json` (the durability benchmarks; "
        "`durable_console.txt`) in this folder, each written by its own run. Every figure is the "
        "median of the repetitions. All maps, including the limit, ran in the same binary and the "
        "same run, the repetitions of all benchmarks in a random interleaved order (unless the "
        "command below says otherwise).\n",
        "What the figures say, written by hand for the run it names: [notes.md](notes.md).\n"
        if os.path.exists(os.path.join(a.out_dir, "notes.md")) else "",
        "Maps: " + "; ".join(f"`{m}`: {MAP_NOTES.get(m, m)}" for m in maps_seen) + ".\n"
        if maps_seen else "",
        machine(ctx or dctx, a.build_dir, a.elapsed, a.command),
        section_key_figures(lookups, idx.get("lookup_pair", [])),
    ]
    if made:
        parts.append("## Charts\n\n" + "\n\n".join(f"![{p}]({p})" for p in made) + "\n")
    parts += [section_lookup(lookups), section_pairs(idx.get("lookup_pair", [])),
              section_scaling_pair(idx.get("scaling_pair", [])),
              section_batch(idx.get("batch_pair", []), ctx),
              section_read_under_write(idx.get("read_under_write", []), lookups),
              section_read_under_write_pair(idx.get("read_under_write_pair", [])),
              section_write(idx.get("write", [])), section_write_pair(idx.get("write_pair", [])),
              section_publish(idx.get("publish", [])),
              section_memory(idx.get("memory", [])),
              section_cache(idx.get("cache_pair", []), idx.get("cache_herd", [])),
              section_durable(dctx, didx)]
    with open(os.path.join(a.out_dir, "README.md"), "w") as f:
        f.write("\n".join(p for p in parts if p))
    print(f"report.py: wrote {os.path.join(a.out_dir, 'README.md')}" +
          (f" and {', '.join(made)}" if made else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
