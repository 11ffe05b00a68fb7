#!/usr/bin/env bash
# Static NEON instruction counts of the decode dot kernels (one weight row against one
# activation row): for each kernel, the hot loop read from the disassembly, its instructions
# per iteration, and per 32-element block (per 256-element super-block for K-quants).
#
# Instructions, not time: a memory-bound decode on a real board does not track these counts
# one to one.
#
# Ours: the fewest instructions on a cycle of the function's control-flow graph that runs
# every dot instruction (sdot, smull/smull2, smlal/smlal2) of one loop step, so branches inside
# the step (partial groups) take their cheap side.
# llama.cpp: the function's first outermost loop, whose body is straight-line code (checked:
# a body with a branch inside is reported); an inner loop the compiler kept is counted
# `trips` times, and its dot instructions are printed to compare with the source. Ours are
# checked against the dot instructions the source issues per block, so a wrong pick prints
# "not counted" instead of a number.
#
# Usage:
#   engine/scripts/neon-instruction-count.sh ENGINE_BIN [LLAMA_PLAIN_O LLAMA_DOTPROD_O]
#
# ENGINE_BIN: the aarch64 engine binary built with debug info for the engine crate, which is
# how the kernels inlined into one function (the packed kernel's three types and four tile
# heights, the generic row kernels) are told apart:
#   cargo build --release -p meltbench-engine --target aarch64-unknown-linux-musl \
#     --config 'profile.release.package.meltbench-engine.debug="limited"'
# LLAMA_*_O: llama.cpp's ggml-cpu/arch/arm/quants.c compiled for armv8-a and for
# armv8.2-a+dotprod (README, "NEON", has the compiler command lines). This script only reads
# binaries; it builds nothing.
#
# Needs llvm-objdump and llvm-symbolizer (LLVM 14 or later) and python3.
set -euo pipefail

if [[ $# -ne 1 && $# -ne 3 ]]; then
    sed -n '2,30p' "$0" >&2
    exit 2
fi

SRC="$(cd "$(dirname "$0")/../src/kernels" && pwd)" exec python3 - "$@" <<'PY'
import heapq
import os
import re
import subprocess
import sys

ENGINE = sys.argv[1]
LLAMA = {"plain": sys.argv[2], "dotprod": sys.argv[3]} if len(sys.argv) == 4 else None

# Our kernels. The instructions of a kernel are told apart by the functions they were
# inlined from (DWARF names, generic arguments included) and, where one function inlines the
# same code twice, by the source line of the call. Fields: type, variant, kind, the frame
# pattern, (frame, source lines) the dot instructions of one loop step come from, the dot
# instructions (sdot, smull/smull2/smlal/smlal2) per block in the source, the blocks of one
# step, and the source loop. The script checks the dot instructions on the cycle it finds
# against blocks x dots per block, so a wrong pick shows instead of a wrong number.
SRC = os.environ["SRC"]


def line_of(file, text, count=1):
    """The first line holding `text`, which must occur `count` times."""
    with open(f"{SRC}/{file}") as f:
        hits = [i + 1 for i, l in enumerate(f) if text in l]
    assert len(hits) == count, f"{text!r} found {len(hits)} times in {file}"
    return hits[0]


M, S = r"neon::Mull", r"neon::Sdot"
KM, KS = r"kquants::neon::Mull", r"kquants::neon::Sdot"
PM, PS = r"neon_packed::Mull", r"neon_packed::Sdot"
# The loop's two block calls (the first of two identical lines; the second is the odd tail).
PAIR_LINES = {line_of("neon.rs", "acc0 = block::<B, D>(&r, i, acc0, &mut msum0);", 2),
              line_of("neon.rs", "acc1 = block::<B, D>(&r, i + 1, acc1, &mut msum1);"),
              # Line 0: LLVM merged code of the two calls, which no longer has a single line.
              0}
FULL_QUARTER = {line_of("neon_packed.rs", "quarter::<B, D, T>(&mut acc, p, g, q, 4, b0, acts);")}
GROUP_STEP = {line_of("neon_packed.rs", "let g = (nb - b0).min(GROUP);")}
OURS = []
for ty in ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]:
    for var, d, per in [("plain", M, 4), ("dotprod", S, 2)]:
        OURS.append((ty, var, "row", rf"^dot_blocks<.*::{ty}, .*{d}>$",
                     (r"^dot_blocks<", PAIR_LINES), None, per, 2,
                     "`while i + 2 <= nb` in dot_blocks (neon.rs)"))
for ty, f in [("Q4_K", "dot_q4_k_impl"), ("Q5_K", "dot_q5_k_impl"), ("Q6_K", "dot_q6_k_impl")]:
    for var, d, per in [("plain", KM, 32), ("dotprod", KS, 16)]:
        OURS.append((ty, var, "row", rf"^{f}<.*{d}>$", None, None, per, 1,
                     f"`for i in 0..nsb` in {f} (kquants/neon.rs)"))
for ty in ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]:
    for var, d, per in [("plain", PM, 4), ("dotprod", PS, 2)]:
        OURS.append((ty, var, "packed", rf"^rows<.*::{ty}, .*{d}>, 1>$",
                     (r"^tile<", FULL_QUARTER), (r"^tile<", GROUP_STEP), per, 16,
                     "a whole 16-block group of `while b0 < nb` in tile (neon_packed.rs), T=1"))
# The dotprod K-quant tile at T=4 (prefill): one super-block for four tokens, so "blocks" are
# (super-block, token) pairs, to set against the row kernel's count per super-block.
for ty, k in [("Q4_K", "Q4K"), ("Q5_K", "Q5K"), ("Q6_K", "Q6K")]:
    OURS.append((ty, "dotprod", "tile", rf"^tile<.*::{k}, 4>$", None, (r"ready", None), 16, 4,
                 "`for i in 0..nsb` in tile (kquants/neon_tile.rs), T=4: per super-block "
                 "and token"))

# llama.cpp's ARM NEON paths (no SVE, no i8mm): the loop and its blocks per step.
# The loop is the function's first outermost one (the tail loops for an odd block come after
# it). When the compiler kept an inner loop of the K-quants, it runs `trips` times per step.
PAIR = "`for (; ib + 1 < nb; ib += 2)`"
LL = [
    ("Q4_0", "ggml_vec_dot_q4_0_q8_0", 2, PAIR, None),
    ("Q4_1", "ggml_vec_dot_q4_1_q8_1", 2, PAIR, None),
    ("Q5_0", "ggml_vec_dot_q5_0_q8_0", 2, PAIR, None),
    ("Q5_1", "ggml_vec_dot_q5_1_q8_1", 2, PAIR, None),
    ("Q8_0", "ggml_vec_dot_q8_0_q8_0", 2, PAIR, None),
    ("Q4_K", "ggml_vec_dot_q4_K_q8_K", 1, "`for (int i = 0; i < nb; ++i)`", (4, "QK_K/64")),
    ("Q5_K", "ggml_vec_dot_q5_K_q8_K", 1, "`for (int i = 0; i < nb; ++i)`", (4, "QK_K/64")),
    ("Q6_K", "ggml_vec_dot_q6_K_q8_K", 1, "`for (int i = 0; i < nb; ++i)`", (2, "QK_K/128")),
]

INSN = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
FUNC = re.compile(r"^([0-9a-f]+) <(.*)>:$")
BRANCH = re.compile(r"^(b|b\.\w+|cbn?z|tbn?z)$")
VECTOR = re.compile(r"\bv\d+\.|\bq\d+\b|sdot")


def disassemble(path):
    """{function name: [(address, mnemonic, operands)]}, names demangled."""
    out = subprocess.run(
        ["llvm-objdump", "-d", "--no-show-raw-insn", "-C", "--mattr=+dotprod,+fullfp16", path],
        check=True, capture_output=True, text=True).stdout
    funcs, cur = {}, None
    for line in out.splitlines():
        m = FUNC.match(line)
        if m:
            # Demangled names repeat (generic instances, local copies): keep each.
            name = m.group(2)
            if name in funcs:
                name = f"{name} @{m.group(1)}"
            cur = funcs.setdefault(name, [])
            continue
        m = INSN.match(line)
        if m and cur is not None:
            cur.append((int(m.group(1), 16), m.group(2), m.group(3)))
    return funcs


def target(ops):
    m = re.search(r"(?:0x)?([0-9a-f]+) <", ops)
    return int(m.group(1), 16) if m else None


def loops(insns):
    """Loops as (start, end) address pairs: each backward branch to a target in the function."""
    lo = insns[0][0]
    found = []
    for addr, mn, ops in insns:
        if BRANCH.match(mn):
            t = target(ops)
            if t is not None and lo <= t <= addr:
                found.append((t, addr))
    return sorted(set(found))


def body(insns, loop):
    return [i for i in insns if loop[0] <= i[0] <= loop[1]]


def describe(insns, loop, all_loops):
    b = body(insns, loop)
    inner = [l for l in all_loops if l != loop and loop[0] <= l[0] and l[1] <= loop[1]]
    backs = {l[1] for l in all_loops}
    branches = sum(1 for a, mn, _ in b if BRANCH.match(mn) and a not in backs)
    return {
        "n": len(b),
        "vec": sum(1 for _, _, ops in b if VECTOR.search(ops)),
        "inner": inner,
        "branches": branches,
        "sdot": sum(1 for _, mn, _ in b if mn == "sdot"),
        "mull": sum(1 for _, mn, _ in b if mn.startswith(("smull", "smlal"))),
    }


def frames(binary, addrs):
    """{address: [inlined function names, innermost first]} from the DWARF line tables."""
    if not addrs:
        return {}
    out = subprocess.run(
        ["llvm-symbolizer", f"--obj={binary}", "--inlining", "--functions=short",
         "--output-style=LLVM"],
        input="".join(f"0x{a:x}\n" for a in addrs), check=True, capture_output=True,
        text=True).stdout
    res = {}
    for a, chunk in zip(addrs, out.strip("\n").split("\n\n")):
        lines = chunk.split("\n")
        res[a] = [(n, int(loc.split(":")[-2]) if loc.count(":") >= 2 else 0)
                  for n, loc in zip(lines[0::2], lines[1::2])]
    return res


def first_outer(insns):
    """The function's first loop that no other loop contains."""
    ls = loops(insns)
    top = [l for l in ls if not any(o != l and o[0] <= l[0] and l[1] <= o[1] for o in ls)]
    return (min(top) if top else None), ls, ls


def row(label, blocks, why, insns, loop, ls, mine, note="", trips=None):
    if loop is None:
        return f"| {label} | - | - | - | no loop found {note} |"
    d = describe(insns, loop, ls)
    outer = [l for l in mine if l != loop and l[0] <= loop[0] and loop[1] <= l[1]]
    extra = []
    if d["inner"]:
        if trips is None or len(d["inner"]) != 1:
            return f"| {label} | - | - | - | {len(d['inner'])} inner loop(s), not counted |"
        inner = describe(insns, d["inner"][0], ls)
        if inner["branches"]:
            return f"| {label} | - | - | - | inner loop with branches, not counted |"
        d["n"] += (trips[0] - 1) * inner["n"]
        d["sdot"] += (trips[0] - 1) * inner["sdot"]
        d["mull"] += (trips[0] - 1) * inner["mull"]
        extra.append(f"inner loop ({trips[1]} = {trips[0]} trips) of {inner['n']} kept by the "
                     f"compiler, counted {trips[0]} times")
    if d["branches"]:
        extra.append(f"{d['branches']} forward branch(es) inside, counted as straight line")
    if outer:
        extra.append("nested in another loop of the same kernel")
    per = d["n"] / blocks
    return (f"| {label} | {d['n']} | {blocks} | {per:.1f} | sdot {d['sdot']}, smull/smlal "
            f"{d['mull']}; loop 0x{loop[0]:x}..0x{loop[1]:x}; {why}"
            + ("; " + "; ".join(extra) if extra else "") + " |")



DOT = re.compile(r"^(sdot|smull2?|smlal2?)$")
ENDS = re.compile(r"^(b|br|ret)$")


def blocks_of(insns):
    """Basic blocks: {start address: (instructions, successor starts)}."""
    lo, hi = insns[0][0], insns[-1][0]
    starts = {lo}
    for i, (a, mn, ops) in enumerate(insns):
        if BRANCH.match(mn) or mn in ("br", "ret"):
            t = target(ops) if BRANCH.match(mn) else None
            if t is not None and lo <= t <= hi:
                starts.add(t)
            if i + 1 < len(insns):
                starts.add(insns[i + 1][0])
    bbs, cur = {}, None
    for i, ins in enumerate(insns):
        if ins[0] in starts:
            cur = bbs.setdefault(ins[0], [[], []])
        cur[0].append(ins)
    for st, (ins, succ) in bbs.items():
        a, mn, ops = ins[-1]
        if BRANCH.match(mn):
            t = target(ops)
            if t in bbs:
                succ.append(t)
        if not ENDS.match(mn):
            nxt = a + 4
            if nxt in bbs:
                succ.append(nxt)
    return bbs


def shortest(bbs, src, dst, banned):
    """Fewest instructions from the start of `src` to the start of `dst` (`dst` itself not
    counted, at least one step), never entering a block of `banned` other than `dst`; with
    the blocks passed, `src` first."""
    prev, heap = {}, [(len(bbs[src][0]), v, src) for v in bbs[src][1]]
    heapq.heapify(heap)
    while heap:
        d, u, frm = heapq.heappop(heap)
        if u == dst:
            path = [frm]
            while path[-1] != src:
                path.append(prev[path[-1]])
            return d, path[::-1]
        if u in prev or u in banned or u == src:
            continue
        prev[u] = frm
        for v in bbs[u][1]:
            heapq.heappush(heap, (d + len(bbs[u][0]), v, u))
    return None, None


def reach(bbs, src, banned=()):
    seen, todo = {src}, [src]
    while todo:
        for v in bbs[todo.pop()][1]:
            if v not in seen and v not in banned:
                seen.add(v)
                todo.append(v)
    return seen


def hot_cycle(insns, required):
    """The fewest instructions on a cycle of the control-flow graph that executes every
    instruction of `required` (addresses) in one of the loops holding them: the loop's
    iteration with every optional branch (partial groups) on its cheapest side. None when no
    single cycle runs them all."""
    bbs = blocks_of(insns)
    of = {}
    for st, (ins, _) in bbs.items():
        for a, _, _ in ins:
            of[a] = st
    req = sorted({of[a] for a in required})
    # Keep the blocks of the strongly connected region holding the most required blocks.
    reaches = {b: reach(bbs, b) for b in req}
    best = max(req, key=lambda b: sum(1 for c in req if c in reaches[b] and b in reaches[c]))
    req = [c for c in req if c in reaches[best] and best in reaches[c]]
    # Any such cycle passes the first required block: cut it there, then the others must be
    # visited in the order in which they reach each other.
    r0 = req[0]
    rest = req[1:]
    cut = {b: reach(bbs, b, {r0}) for b in rest}
    order = sorted(rest, key=lambda b: -sum(1 for c in rest if c in cut[b]))
    total, at, path = 0, r0, []
    for nxt in order + [r0]:
        d, p = shortest(bbs, at, nxt, {r0})
        if d is None:
            return None, req, None
        total, at, path = total + d, nxt, path + p
    return total, req, path

print("| kernel | instructions per iteration | blocks per iteration | instructions per block "
      "| notes |")
print("|---|---|---|---|---|")

funcs = disassemble(ENGINE)
ours_funcs = {n: f for n, f in funcs.items()
              if re.search(r"kernels(::|\.\.)(kquants(::|\.\.))?neon(_packed|_tile)?(::|\.\.)", n) and f}
addr_frames = frames(ENGINE, [a for f in ours_funcs.values() for a, _, _ in f])
if not any(len(fr) > 1 for fr in addr_frames.values()):
    sys.exit(f"{ENGINE} has no inlining debug info: build it with --config "
             "'profile.release.package.meltbench-engine.debug=\"limited\"' (see the header)")
STARTS = {f[0][0]: n for n, f in funcs.items() if f}


def calls(bbs, path, times=1):
    """Instructions of the functions called on `path` (`times` over), and the names of any
    callee with branches of its own, which is not counted."""
    cost, skipped = 0, []
    for b in path:
        for _, mn, ops in bbs[b][0]:
            if mn != "bl":
                continue
            name = STARTS.get(target(ops))
            body = funcs.get(name, [])
            if body and all(not BRANCH.match(m) for _, m, _ in body):
                cost += times * len(body)
            else:
                skipped.append(name or ops)
    return cost, skipped


def matches(fr, pat, lines=None):
    return any(re.search(pat, n) and (lines is None or line in lines) for n, line in fr)


for ty, var, kind, pat, step, outer, per, blocks, why in OURS:
    label = f"ours {kind} {ty} {var}"
    mine = lambda a: matches(addr_frames.get(a, []), pat)
    hits = [n for n, f in ours_funcs.items() if any(mine(a) for a, _, _ in f)]
    if len(hits) != 1:
        print(f"| {label} | - | - | - | found in {len(hits)} functions, not counted |")
        continue
    insns = ours_funcs[hits[0]]
    bbs = blocks_of(insns)
    required = [a for a, mn, _ in insns if DOT.match(mn) and mine(a)
                and (step is None or matches(addr_frames[a], *step))]
    n, req, path = hot_cycle(insns, required)
    if n is None:
        print(f"| {label} | - | - | - | no single cycle runs all its dot instructions |")
        continue
    dots = sum(1 for b in req for a, mn, _ in bbs[b][0] if a in required)
    note = ""
    if outer is not None and dots < blocks * per:
        # The step's inner loop (whole quarters) was kept: one pass of the outer step with
        # one inner trip, plus the other trips of the inner cycle.
        extra = [a for a, _, _ in insns if mine(a) and matches(addr_frames[a], *outer)]
        n2, _, path2 = hot_cycle(insns, required + extra)
        trips = blocks * per // dots
        if n2 is None or blocks * per % dots:
            print(f"| {label} | - | - | - | inner loop of {dots} dot instructions, not counted |")
            continue
        note = (f"; inner loop of {n} instructions ({dots // per} blocks) kept by the compiler, "
                f"run {trips} times per step, plus {n2 - n} of the outer step")
        c1, s1 = calls(bbs, path, trips - 1)
        c2, s2 = calls(bbs, path2)
        called, skipped = c1 + c2, s1 + s2
        n, dots = n2 + (trips - 1) * n, dots * trips
    else:
        called, skipped = calls(bbs, path)
    if skipped:
        print(f"| {label} | - | - | - | calls {', '.join(sorted(set(skipped)))}: not counted |")
        continue
    if called:
        note += f"; includes {called} instructions of functions it calls"
        n += called
    if dots != blocks * per:
        print(f"| {label} | - | - | - | cycle has {dots} dot instructions, expected "
              f"{blocks} x {per}: not counted |")
        continue
    print(f"| {label} | {n} | {blocks} | {n / blocks:.1f} | {dots} dot instructions "
          f"({per} per block); {why}{note} |")

if LLAMA:
    for var, path in LLAMA.items():
        lf = disassemble(path)
        for ty, sym, blocks, why, trips in LL:
            insns = lf.get(sym)
            label = f"llama.cpp {ty} {var}"
            if not insns:
                print(f"| {label} | - | - | - | {sym} not in {path} |")
                continue
            loop, ls, mine = first_outer(insns)
            print(row(label, blocks, why, insns, loop, ls, mine, trips=trips))
PY
