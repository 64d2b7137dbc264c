"""Launch plans: how each segment of a pattern maps onto kernel programs and tiles, and what that costs.

A plan is built once per (pattern, n, head_dim, dtype, device kind) and cached (`build_plan` is
lru-cached; patterns are hashable). It holds, for each segment, the tile sizes of the three kernels
(forward, dq, dk/dv), their grids, and the statistics the benchmarks print: tiles computed, tile density
and element density, the exact FLOPs of the pattern at n.

Tile sizes are data (TILE_TABLE), chosen per head dim and pass; a group shorter than a tile shrinks the tile
(to a power of two >= 16, the smallest tl.dot shape) so that the stride part of short sequences does not
compute mostly padding. Under the Triton interpreter (TRITON_INTERPRET=1) tiles are 16 (the fused band
backward's owned tile 32, so that its owned tile and streamed chunk differ) so that small tests still cross
tile boundaries.

Band segments run their backward as two kernels (dq, then dk/dv), except where each group fits one query tile
(GROUP_BACKWARD, TILE_TABLE's "group_bwd" entry: strided attention's stride part, fixed's local blocks): one program per
group computes dq, dk and dv, each score once (backward.py's `_group_bwd_kernel`).
FUSED_BAND_BACKWARD switches the other band segments to one kernel (backward.py's `_band_bwd_kernel`), which reads
q, k, v, dO from DRAM once instead of twice but measured slower on an H200 (benchmarks/KERNEL_NOTES.md, version
"one-kernel band backward"); it stays for comparisons. A split segment after the backward's first whose dq and dk/dv
tiles agree in warps and stages runs both in one grid (ONE_GRID_BACKWARD: strided attention's band).

Fixed attention's summary segment (a causal, dense-like loop over n / l * c compact keys) has its own arrangements: its
kernels start their longest programs first across heads (SUMMARY_LONGEST_FIRST), the backward runs it after the local
blocks (SUMMARY_BACKWARD_LAST, Plan.backward_order) with its dq in one grid with its dk/dv or launched in dk/dv's last
wave (ONE_GRID_BACKWARD, SUMMARY_DKDV_FIRST), and the forward runs the local blocks inside its programs
(FUSED_LOCAL_FORWARD). Every other launch of a forward or backward takes the heads from the last, starting where the
launch before it ended, on rows that may still be in L2 (ALTERNATE_HEAD_ORDER). A band's interior tiles skip their
mask (LEAN_MASKS), and a later band segment adds its gradients by TMA reduction instead of reading the earlier ones
back (REDUCE_READ_BACK). Each switch is measured against its other setting in benchmarks/KERNEL_NOTES.md.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
from dataclasses import dataclass, field

from sparse.kernels.geometry import (
    LAST_TILE_FIRST,
    LONGEST_FIRST,
    TILES_BY_HEAD,
    TMA_GROUP_ROWS,
    TMA_OFF,
    TMA_ROWS,
    TMA_SUMMARY_KEYS,
)
from sparse.patterns import BandSegment, Pattern, Segment, SummarySegment

# (pass, head_dim) -> (BLOCK_M queries, BLOCK_N keys, num_warps, num_stages[, max registers per thread]).
# Head dim 64 (and 32) are the winners of benchmarks/tune_tiles.py on an H100 for strided/fixed at n = 12,288 and
# strided at 3,072 x 8 unless a comment names a later search; head dim 128 the winners of `tune_tiles --head-dim
# 128` on an H200 for the CIFAR-10 models' call (strided and fixed, n = 3,072, batch 8, 2 heads;
# results/profiles/tune_tiles-d128-8f8a99d2993e.txt): small tiles and 4 warps beat the tutorial's 8-warp tiles by
# 10-60% per pass: there a stride group has 32 rows (3,072 / 96), one small tile.
# dk/dv programs own a key tile and stream query tiles, dq programs the reverse.
# The optional fifth number caps the registers per thread (Triton's maxnreg). These kernels are latency-bound: each
# program makes a few dependent loads, so programs per SM (set by registers, `python -m benchmarks.kernel_resources`)
# decide how much latency is hidden. The stride part's dk/dv compiles to 174 registers at head dim 64, two 4-warp
# programs per SM; capped at 128 it spills 104 bytes but fits four, and runs faster.
TILE_TABLE: dict[tuple[str, int], tuple[int, ...]] = {
    ("fwd", 32): (64, 64, 4, 3),
    # Head dim 64 forward and dk/dv: `tune_tiles` on an H200 with register caps among the candidates
    # (results/profiles/tune_tiles-maxnreg-149bc34c9831.txt; forward-only ms / fwd+bwd ms over the three cases,
    # strided 12,288 / fixed 12,288 / strided 3,072 x 8): forward 64 x 32 0.115 / 0.316 / 0.171 against 64 x 64's
    # 0.118 / 0.317 / 0.187 (105 against 135 registers: 4 programs per SM instead of 3); dk/dv capped at 128
    # registers 0.394 / 1.289 / 0.648 against 0.413 / 1.294 / 0.673 uncapped. Caps did not help dq (96 registers).
    # Then three stages, once the stride part also came by descriptor and launches started early (714d009df299): the
    # forward alone (CUDA graphs; strided 12,288 / fixed 12,288 / strided 3,072 x 8) 0.0939 / 0.3117 / 0.1468 ms
    # against 0.1004 / 0.3125 / 0.1486 with two (results/profiles/tune_tiles-pdl-714d009df299.txt). Then capped at 76
    # registers (82 uncapped since the fused band mask; no spill): six programs per SM instead of five, the forward
    # alone (CUDA graphs) 0.0811 against 0.0819 ms at strided 12,288, 0.1333 against 0.1348 at 3,072 x 8; 72 spills
    # and lost 50% (results/profiles/tune_tiles-fwd-caps-02757c4b5f86.txt). Under the cap ptxas serializes the
    # forward's wgmma (each product waits for the one before; silently at 76, note C7512 at 78 and 80), uncapped they
    # overlap: six programs per SM won over the overlap (`python -m benchmarks.kernel_resources`, its wgmma column).
    ("fwd", 64): (64, 32, 4, 3, 76),
    ("fwd", 128): (64, 32, 4, 2),  # strided CUDA-graph fwd 0.042 ms vs 0.067 for (128, 64, 8, 3)
    ("dq", 32): (64, 32, 4, 2),
    # Head dim 64 dq and dk/dv: one pipeline stage more once tiles come by tensor descriptor (TMA_BAND_LOADS), which
    # holds them in shared memory, not registers: strided 3,072 x 8 fwd+bwd 0.516 / 0.513 ms against 0.525 / 0.524
    # with 2 stages, each searched alone (results/profiles/tune_tiles-stages-fb5b7bc71774.txt).
    ("dq", 64): (64, 32, 4, 3),
    ("dq", 128): (64, 32, 4, 2),  # fwd+bwd: strided 0.235 ms vs 0.261, fixed 0.394 vs 0.428
    ("dkdv", 32): (32, 64, 4, 2),
    ("dkdv", 64): (32, 64, 4, 3, 128),
    ("dkdv", 128): (32, 64, 4, 2),  # fwd+bwd: strided 0.228 ms vs 0.261, fixed 0.419 vs 0.425
    # The summary part's forward and dq: programs own sequence-order query tiles and stream the compact summary
    # keys, a dense-like loop of up to n / l * c keys, unlike the band's one or two tiles. Head dim 64: the
    # winners of `tune_tiles --kinds fwd_summary,dq_summary` on an H200 for fixed n = 12,288 (CUDA-graph fwd+bwd
    # 1.299 ms and 1.298 ms against 1.342 and 1.346 for the shared tiles, each searched with the other at its old
    # value; results/profiles/tune_tiles-summary-80b6bfa6e6b6.txt). Head dims 32 and 128: not searched, the shared ones.
    ("fwd_summary", 32): (64, 64, 4, 3),
    ("fwd_summary", 64): (128, 64, 4, 3),
    ("fwd_summary", 128): (64, 32, 4, 2),
    ("dq_summary", 32): (64, 32, 4, 2),
    # Head dim 64, once its key tiles came by descriptor (TMA_SUMMARY_KEY_LOADS): 64 x 64 at 4 warps (128 registers,
    # three programs per SM), fixed 12,288 fwd+bwd 1.147 ms against 1.248 for 128 x 64 at 8 warps, which the
    # descriptors took from 125 to 140 registers and two programs per SM to one (tune_tiles-summary-b3d5e47cfc62.txt).
    # Then 128 x 64 at 4 warps once programs started longest first (SUMMARY_LONGEST_FIRST): 0.927 against 0.942 ms
    # (tune_tiles-longest-first-e334bca8b384.txt; 128 x 64 at 8 warps 0.930-0.935). At two stages, dk/dv's, both ran
    # in one grid (ONE_GRID_BACKWARD), 0.957 ms against 0.986 in two launches, but two stages cost dq more than that:
    # 0.917 at three in two launches (profile_kernels-c10f5963b985.txt, -891ace516f23.txt; separate processes). One grid
    # with each body's loops at its own depth (`tl.range(num_stages=...)`, a10edc367e4d) lost too: 0.937 against 0.927
    # ms in two launches, same process (profile_kernels-a10edc367e4d.txt; 200 bytes spilled against dq's none).
    ("dq_summary", 64): (128, 64, 4, 3),
    ("dq_summary", 128): (64, 32, 4, 2),
    # The summary part's dk/dv: a program owns summary keys and streams every later query, n / BLOCK_M tiles
    # one after another for the first keys, so this kernel's time is that serial loop (KERNEL_NOTES.md).
    ("dkdv_summary", 32): (32, 64, 4, 2),
    # Head dim 64: 128 x 64 on an H200 (fixed 12,288 fwd+bwd 1.286 ms against 1.296 for 64 x 64, which had beaten
    # 32 x 64 on an H100, 1.376 vs 1.452 ms; results/profiles/tune_tiles-maxnreg-149bc34c9831.txt). Then two stages
    # once the query tiles came by descriptor (TMA_SUMMARY_QUERIES): 1.169 against 1.249 ms at three, whose 115 KB of
    # shared memory left one program per SM (tune_tiles-summary-b3d5e47cfc62.txt; key tiles of 128, the tutorial's
    # shape, were slower: 1.26-1.79 ms).
    # Then 64 x 64 at three stages once dq ran in its last wave (SUMMARY_DKDV_FIRST): 0.8508 against 0.8666 ms
    # (tune_tiles-dkdv_summary-ed1ab97b4cc6.txt; dq_summary's 128 x 64 at three stages stayed the best of six beside it,
    # tune_tiles-dq_summary-ed1ab97b4cc6.txt).
    ("dkdv_summary", 64): (64, 64, 4, 3),
    ("dkdv_summary", 128): (64, 64, 4, 3),  # fixed fwd+bwd 0.402 ms, best of the 8 searched
    # The same kernel with its scores as [queries, keys] (SUMMARY_DKDV_QUERY_ROWS). Head dim 64: `tune_tiles --kinds
    # dkdv_summary_rows --cases fixed:12288` (0216bb36bf73, tune_tiles-dkdv_summary_rows-0216bb36bf73.txt): 128 x 64 at
    # 4 warps 0.879 ms, where 8 warps under 128 registers (two programs per SM, 16 warps) ran 0.977 and the transposed
    # form's 128 x 64 0.898 in the call's other process; head dims 32 and 128: the transposed form's, not searched.
    ("dkdv_summary_rows", 32): (32, 64, 4, 2),
    ("dkdv_summary_rows", 64): (128, 64, 4, 2),
    ("dkdv_summary_rows", 128): (64, 64, 4, 3),
    # The band segments' one-kernel backward (off by default): (BLOCK, CHUNK, num_warps, num_stages): a program
    # owns BLOCK keys and the same BLOCK queries, and streams the other side CHUNK at a time. Head dims 64 and 128:
    # the best of `tune_tiles --kinds bwd` on an H200 (results/profiles/tune_tiles-bwd-9c8a4c4b16df.txt), every
    # case; head dim 32 not searched.
    ("bwd", 32): (64, 32, 4, 2),
    ("bwd", 64): (64, 32, 4, 3),
    ("bwd", 128): (64, 32, 4, 3),
    # Whole-group backward (GROUP_BACKWARD): (BLOCK, BLOCK_N, num_warps, num_stages). BLOCK is the longest group one
    # program owns whole (shorter groups shrink it to a power of two >= their length, and the warps with it, one per
    # 16 rows), BLOCK_N the key tile it streams; its [BLOCK, BLOCK_N] fp32 scores live in registers.
    # Head dim 64, on an H200 (CUDA-graph fwd+bwd, same process each): groups of 32 rows (strided 3,072 x 8) 0.554 ms
    # whole against 0.633 split (profile_kernels-cbf9b3c8bb85.txt). Groups of 96 and 128 rows (strided and fixed
    # 12,288) in one [128, 128] step ran slower than split, 0.397 against 0.387 ms: 189 registers at 8 warps, one
    # program per SM (tune_tiles-group_bwd-cbf9b3c8bb85.txt). Streamed in key tiles (tune_tiles-group_bwd-
    # c7cb0d27a059.txt, against BLOCK = 64, i.e. split kernels for those groups): 128 x 32 at 4 warps (224 registers,
    # two programs per SM) strided 12,288 0.378 against 0.391 ms, fixed 1.287 against 1.276, 3,072 x 8 0.551 against
    # 0.552; 128 x 64 at 8 warps capped at 128 registers 0.379 / 1.268 / 0.560; 128 x 16 at 8 warps 0.412 / 1.306.
    # Then 128 x 64 at 8 warps capped at 128 registers (32 bytes spilled; 200 registers uncapped at 128 x 32 w4) once
    # fixed's summary ran longest first and its forward took the local blocks (a10edc367e4d, tune_tiles-group_bwd-
    # a10edc367e4d.txt): fixed 12,288 0.923 against 0.939 ms, strided 12,288 0.326 against 0.329; and at three stages
    # (688f9acec440, tune_tiles-group_bwd-688f9acec440.txt): fixed 0.902 against 0.907, strided 0.318 against 0.323.
    # Groups of up to 64 rows (strided 3,072 x 8's 32) shrink to one key tile at two warps and take no cap (the SASS of
    # before).
    # Head dims 32 and 128: not searched; the split kernels above 64 rows.
    ("group_bwd", 32): (64, 64, 4, 1),
    ("group_bwd", 64): (128, 64, 8, 3, 128),
    ("group_bwd", 128): (64, 64, 4, 1),
}
# A tile shrunk to a short group (32 x 32 for the stride part at n = 3,072, l = 96) runs with fewer warps: its
# programs each make a few dependent loads and little math, so more programs per SM hide more latency, and two warps
# per program double them there (benchmarks/kernel_resources.py). None keeps the table's warps (for comparisons).
SMALL_TILE_ELEMENTS = 32 * 32
SMALL_TILE_WARPS: int | None = 2
INTERPRETER_TILE = (16, 16, 1, 1)
INTERPRETER_BWD_TILE = (32, 16, 1, 1)
# Under the interpreter groups of up to 32 rows run whole, so the tests' short groups take this kernel (those of
# 17-32 rows in two key tiles of 16) and their longer ones (and every window of more than 32 rows) the split kernels.
INTERPRETER_GROUP_TILE = (32, 16, 1, 1)
# Groups of up to this many rows run the whole-group backward in one key tile whatever the table's key tile: straight-
# line code with the fewest registers (a 32-row group: 100 per thread against 148 in two steps of 16). Longer groups
# stream the table's key tiles, so that their scores do not take a whole SM's registers. The interpreter's 16 makes
# its groups of 17-32 rows take the loop.
ONE_STEP_ROWS = 64
INTERPRETER_ONE_STEP_ROWS = 16
FUSED_BAND_BACKWARD = False
GROUP_BACKWARD = True
# Band segments of step 1 (strided's local band, fixed's local blocks) load their q, k, v and dO tiles in the forward,
# dq and dk/dv kernels through tensor descriptors (Hopper's TMA; geometry.tma_rows): their rows are contiguous in
# the sequence, so a tile is one asynchronous bulk copy with no per-row address registers or masks. The launcher uses
# them where the tensors allow (16-byte aligned base and strides), else pointer loads. On an H200, same process, CUDA
# graphs: strided 3,072 x 8 fwd+bwd 0.513 ms against 0.536 by pointer, strided 12,288 0.366 against 0.384, fixed
# 12,288 1.290 against 1.296 (results/profiles/profile_kernels-5c5371057fe2.txt and -d7696bb5e5e3.txt). The host
# pays for it: Triton's launcher encodes each descriptor at every launch.
TMA_BAND_LOADS = True
# The stride part of strided attention (step l, one group per residue, n a multiple of l) loads its tiles by
# descriptor too, in the forward and the split dq and dk/dv kernels: row t of group g is position t * l + g, so a
# [B, H, l, n / l, D] descriptor of the same memory holds each group's rows as one box (geometry.TMA_GROUP_ROWS). By
# pointer, each of its tiles is BLOCK rows l * D elements apart.
TMA_STRIDE_LOADS = True
# The whole-group backward of such a segment loads its k and v tiles by descriptor too (never q and dO: see
# backward.py's `_group_bwd_kernel`, registers); False keeps it on pointers (profile_kernels' `group-keys-tma` path).
TMA_GROUP_KEYS = True
# A summary segment's dk/dv programs (fixed attention) stream the query tiles of every later window, in sequence order:
# those q and dO tiles come by [B, H, n, D] descriptor (TMA_ROWS), as a band's. Its keys, and the forward's and dq's
# streamed key tiles, are compact summary columns gathered by pointer (SegmentLaunch.tma_of).
TMA_SUMMARY_QUERIES = True
# The summary forward's and dq's streamed key tiles (compact summary columns, c rows in each window of l) by a [B, H,
# n / l, l, D] descriptor (geometry.TMA_SUMMARY_KEYS), where n is a multiple of l and c a power of two.
TMA_SUMMARY_KEY_LOADS = True
# A summary segment's dk/dv computes its scores as [queries, keys] (backward.py's QUERY_ROWS) rather than transposed:
# per-query LSE and D rows then cost a few registers per thread instead of a quarter of the query tile each
# (kernel_resources, 128 x 64 at 4 warps: 32 bytes spilled against the transposed form's 112, with TMA_ROW_STATS), at
# the price of p and ds going through shared memory into the dk and dv dots. Tiles: TILE_TABLE's "dkdv_summary_rows".
# Off: on an H200, fixed 12,288 fwd+bwd ran 0.9008 ms (CUDA graphs) in this form against 0.8859 transposed, both with
# TMA_ROW_STATS, and 0.8904 in this form by pointer (one process; profile_kernels-d1e0d75b86ad-fixed.txt): the
# transposed form with the rows by descriptor is the fastest of the three. Kept for comparisons (`summary-dkdv-rows`).
SUMMARY_DKDV_QUERY_ROWS = False
# The split dk/dv kernels whose streamed query tiles come by TMA_ROWS descriptor (fixed's summary, step-1 bands) load
# each tile's lse2 and D rows by a [B * H, n] descriptor too (SegmentLaunch.row_stats_tma; float32 rows need n a
# multiple of 4 for 16-byte row strides). By pointer, those two pipelined loads cost registers (sm_90,
# benchmarks/kernel_resources.py): fixed 12,288's summary dk/dv (128 x 64, 4 warps, 2 stages) compiles to 255 registers
# and 144 bytes spilled, 112 with these descriptors (none with the loads replaced by constants); strided's band dq +
# dk/dv grid (32 x 64 capped at 128 registers) spills 24 bytes, 8 with them. On an H200 (CUDA-graph fwd+bwd, one
# process each; profile_kernels-d1e0d75b86ad-*.txt): strided 12,288 0.3167 ms against 0.3203 by pointer, strided 3,072 x
# 8 0.4828 against 0.4871; fixed 12,288 (transposed summary dk/dv) 0.8859, by pointer ~0.898 in another process.
TMA_ROW_STATS = True
# The backward runs a leading summary segment last (Plan.backward_launches) where a band segment after it owns every row
# once (fixed attention's local blocks): that band writes every dq, dk, dv row and D first, so dk and dv need no
# zero-fill and the summary's dk/dv reads back only its summary keys (c of every l) instead of the band reading back
# every key. The forward keeps the summary first: there the band's programs read back cheaper (its segment first ran the
# forward 6% slower, profile_kernels-b286b07c6346.txt, while the backward of that order was 3.5% faster).
SUMMARY_BACKWARD_LAST = True
# A summary segment's forward, dq and dk/dv programs start longest first across heads (geometry.LONGEST_FIRST,
# LAST_TILE_FIRST): their lengths differ by up to the number of windows, and head by head the last wave would be the
# last heads' longest programs.
SUMMARY_LONGEST_FIRST = True
# Fixed attention's forward in one launch: each summary program also streams the keys of its query tile's own window
# (the local blocks' segment) in the same softmax (forward.py's LOCAL_BLOCK), where the summary forward's query tile
# lies in one window (l a multiple of BLOCK_M). The local blocks' own forward launch, which read q and the partial o and
# lse back, is then skipped.
FUSED_LOCAL_FORWARD = True
# A segment with split dq and dk/dv kernels, not the first in the backward's order (whose dq programs may compute D),
# runs both in one grid: the first programs own key tiles (dk/dv), the rest query tiles (dq). The two bodies are
# independent (each reads only the inputs and what earlier segments wrote), so neither waits for the other's last wave;
# the grid takes the dk/dv tile's warps, stages and register cap (backward.py's `_dq_dkdv_kernel`). Only where dq's and
# dk/dv's warps and stages agree: strided attention's band; fixed attention's summary, run after the local blocks.
ONE_GRID_BACKWARD = True
# A split segment after the backward's first that does not run in one grid (fixed attention's summary, whose dq and
# dk/dv differ in stages) launches its dk/dv before its dq, paired by geometry.PDL_HANDOFF / PDL_TAIL: dq's programs
# start as soon as every dk/dv program has passed its wait, fill the SMs that dk/dv's last (shortest) programs leave
# idle, and wait only before writing. dk/dv goes first because it is the longer launch (~370 against ~220 us at fixed
# n = 12,288): the longer launch's tail is the one worth filling (a greedy-schedule simulation of fixed n = 12,288's
# program lengths put the pair ~6% shorter than one after the other). Measured at head dim 64 with dk/dv at 128 x 64,
# two stages: CUDA-graph fwd+bwd 0.8625 against 0.8889 ms (profile_kernels-ed1ab97b4cc6.txt). Since then head dim 64's
# summary dk/dv tile matches dq's warps and stages and the two run in one grid (faster still: TILE_TABLE); the pair is
# what head dim 128 runs.
SUMMARY_DKDV_FIRST = True
# The launches of one forward or backward after its first start early, beside the one before, by programmatic
# dependent launch (Hopper; geometry.PDL_EARLY): they load their input tiles, then wait for it to finish. Off under the
# interpreter.
PROGRAMMATIC_LAUNCH = True
# Every other launch of a forward or backward takes its (batch, head)s from the last (geometry's HEADS_REVERSED), so
# that it starts on the heads the launch before it ended on, whose rows may still be in L2. Measured on an H200
# (profile_kernels-47c9bae76263.txt, CUDA-graph fwd+bwd against heads in order in one process): strided 12,288 0.3080
# against 0.3157 ms (forward alone 0.0878 against 0.0925), strided 3,072 x 8 0.4746 against 0.4829, strided 65,536
# 2.300 against 2.313, fixed 12,288 0.8512 against 0.8532 (its summary programs run longest first across heads).
ALTERNATE_HEAD_ORDER = True
# Fewer instructions per score where the kernels issue more than they wait (Nsight Compute on an H200, strided 12,288,
# results/profiles/counters-*.txt: the forward kernels keep their issue slots ~62% busy, FMUL, FSEL and ISETP are ~35%
# of their instructions, the band's dq + dk/dv grid's FSEL and ISETP 22%): a band segment's tiles every pair of which is
# allowed skip the mask (geometry.band_interior, band_interior_queries: two of the six key tiles of a 64-row query tile
# with a window of 128; geometry.mask_tile). A runtime branch per tile, not split loops: the loops stay one pipelined
# loop of a few tiles. The numbers below were taken with the switch also moving the forward's scale into its exponent's
# fused multiply-add; that move is unconditional since the review after them (the same machine code with the switch on).
# On an H200, same process, CUDA-graph fwd+bwd against LEAN_MASKS off (profile_kernels-2a0e2be6f48f.txt): strided
# 12,288 0.2905 against 0.2918 ms, fixed 12,288 0.8351 against 0.8440, strided 65,536 2.067 against 2.220 (-7%),
# strided 3,072 x 8 0.4515 against 0.4488 (+0.6%). The forward's FMULs are mostly its accumulator's rescale. Once the
# band mask became one compare per score (geometry.tile_allowed, 66c72d86e91a; profile_kernels-66c72d86e91a.txt):
# strided 12,288 0.2854 against 0.2842 off, 65,536 1.974 against 2.036 (-3%), fixed 0.8392 against 0.8435.
LEAN_MASKS = True
# A band segment after the backward's first, with split or one-grid dq and dk/dv loading by TMA_ROWS, adds its dq, dk,
# dv to the earlier segments' by TMA reduction (geometry.add_rows) instead of reading them back, adding and storing:
# Nsight Compute (strided 12,288's band dq + dk/dv grid, results/profiles/counters-*.txt) put ~19% of its warps' stall
# samples in those epilogues, waiting for the read-back. The sum is rounded twice in bf16 / fp16 (the segment's share,
# then the sum) where the read-back rounded once; still one add per element per launch, in launch order, so two runs
# give equal bits. Only where no tile's rows run past its group's end into rows before n (one group, or groups a
# whole number of tiles long).
# On an H200, same process, CUDA-graph fwd+bwd against REDUCE_READ_BACK off (profile_kernels-2a0e2be6f48f.txt): strided
# 12,288 0.2905 against 0.3069 ms (-5.3%), strided 3,072 x 8 0.4515 against 0.4798 (-5.9%), strided 65,536 2.067
# against 2.159 (-4.3%); fixed unchanged (none of its segments qualifies).
REDUCE_READ_BACK = True
# Outputs stored by descriptor (geometry.store_rows: one TMA copy from shared memory per tile) instead of by pointer,
# where a kernel's tiles come by descriptor and no tile runs past its group's end into rows before n: the first
# backward segment's whole-group dq, dk and dv (strided's stride part, fixed's local blocks), and each band segment's
# forward o (a later segment reads the earlier one's rows back by the same descriptor). Why: a pointer store of a matrix
# product's result goes through shared memory into a layout for coalesced stores (a convert_layout: a store, a barrier
# and a load back) and then one masked store per thread with 64-bit addresses; by descriptor it is the store to shared
# memory and one bulk copy (the whole-group backward's counters: barrier stalls 2.1 cycles per instruction, IMAD and
# ISETP 17% of its instructions). The compiler's report (sm_90): the whole-group backward's 24 spilled bytes gone (126
# registers against 128 at its cap), its PTX 1,124 lines against 1,198, the forwards' 621 / 660 against 659 / 754.
# On an H200, same process, CUDA-graph fwd+bwd, interleaved rounds against TMA_STORES off: strided 12,288 0.2792 /
# 0.2799 against 0.2817 / 0.2821 ms (-0.8%; the forward alone 0.0797 / 0.0802 against 0.0814 / 0.0814), strided
# 3,072 x 8 0.4364 / 0.4366 against 0.4406 / 0.4413 (-1.0%), fixed 12,288 0.8413 / 0.8439 against 0.8450 / 0.8452,
# strided 65,536 2.028 / 2.063 against 2.045 / 2.073 (results/profiles/profile_kernels-78a66500337a-tmastores.txt: this
# change uncommitted); at af1b354e2cda on another machine, three rounds (profile_kernels-af1b354e2cda-tma-stores.txt):
# strided 12,288 0.2802 / 0.2802 / 0.2806 against 0.2821 / 0.2821 / 0.2807 (-0.5%), 3,072 x 8 0.4309 / 0.4315 / 0.4320
# against 0.4342 / 0.4366 / 0.4366 (-1.0%), fixed 0.834-0.840 either way. Out, dq, dk and dv bitwise equal either way
# (tests/sparse/test_kernels.py's test_tma_stores and, compiled, test_gpu_tma_stores: gpu_cuda_tests-af1b354e2cda.txt).
TMA_STORES = True
# D = rowsum(dO * O) is recomputed per query tile by the one-kernel backward's dk/dv programs only where each key
# tile sees a bounded number of query tiles: a window, or groups of at most this many rows.
DELTA_ON_THE_FLY_MAX_ROWS = 256
MIN_TILE = 16
FLOAT32_MAX_STAGES = 2  # Tiles.options_for
# The GPU a plan is for. The settings above were measured on Hopper (compute capability 9.0: H100, H200), and several
# are Hopper's own: tensor descriptors (the TMA_* loads and REDUCE_READ_BACK's reductions are TMA copies) and
# programmatic dependent launch (PROGRAMMATIC_LAUNCH; its griddepcontrol instruction does not exist before sm_90, where
# ptxas refuses the kernels: "Instruction 'griddepcontrol' requires .target sm_90 or higher"). For a GPU of compute
# capability 8.x (A100, A10, RTX 30xx and 40xx, L4, L40) a plan loads every tile by pointer and launches its kernels one
# after the other (tests/sparse/test_gpu_targets.py runs that plan compiled on a Hopper GPU; `python -m
# benchmarks.kernel_resources --arch 80` compiles it for sm_80). Below 8.0 the Triton backend refuses
# (sparse.attention.check_gpu: sm_80 is the oldest GPU the kernels are compiled and checked for). GPUs newer than Hopper
# (sm_100, sm_120) take Hopper's plan; none has been run.
# SPARSE_HOPPER_FEATURES=0 asks for the older GPUs' plan on a Hopper GPU too (launch.plan_for): to compare the two
# in one process, or to run that path's GPU tests on the GPU at hand.
HOPPER_ARCH = 90
MIN_ARCH = 80
# Shared memory per block: sm_90's 227 KB, against which TILE_TABLE's stages were chosen. sm_80's 163 KB holds every
# launch as tuned; below SMALL_SHARED_BYTES (sm_86, sm_89, sm_120: 99 KB) 16-bit tiles pipeline at most
# SMALL_SHARED_MAX_STAGES deep (Tiles.options_for; at three, fixed attention's summary dk/dv at head dim 128 asks for
# 107,520 bytes), and float32 inputs are refused (sparse.attention.check_gpu: the whole-group backward's 128 x 64
# tile needs 131,072 bytes even at one stage). From the compiler's reports, `python -m benchmarks.kernel_resources
# --arch 86` (and --arch 80, 89) over strided, fixed and dense cases at head dims 32, 64 and 128
# (results/profiles/kernel_resources_arch-e99a9f23b090.txt, -02e777f1c03d.txt: float32 on sm_80 too).
SM90_SHARED_BYTES = 232448
SMALL_SHARED_BYTES = 160 * 1024
SMALL_SHARED_MAX_STAGES = 2


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


@dataclass(frozen=True)
class Tiles:
    block_m: int
    block_n: int
    num_warps: int
    num_stages: int
    max_registers: int | None = None  # ptxas's per-thread cap (Triton's maxnreg); None: the compiler's choice

    @property
    def launch_options(self) -> dict[str, int]:
        options = dict(num_warps=self.num_warps, num_stages=self.num_stages)
        if self.max_registers is not None:
            options["maxnreg"] = self.max_registers
        return options

    def options_for(self, element_size: int, shared_bytes: int = SM90_SHARED_BYTES) -> dict[str, int]:
        """The launch options for inputs of `element_size` bytes on a GPU with `shared_bytes` of shared memory per
        block: TILE_TABLE's stages are tuned for 16-bit inputs on sm_90, and a float32 tile takes twice their shared
        memory, so 4-byte inputs pipeline at most FLOAT32_MAX_STAGES deep (fixed attention's summary dk/dv at head dim
        128, 64 x 64 at three stages with its query tiles by descriptor, asked for 263,184 bytes of shared memory in
        float32, over sm_90's 232,448: GPU tests of 33519d4a89cb); on a GPU with less shared memory than
        SMALL_SHARED_BYTES at most SMALL_SHARED_MAX_STAGES deep."""
        options = self.launch_options
        if element_size >= 4:
            options["num_stages"] = min(options["num_stages"], FLOAT32_MAX_STAGES)
        if shared_bytes < SMALL_SHARED_BYTES:
            options["num_stages"] = min(options["num_stages"], SMALL_SHARED_MAX_STAGES)
        return options


@dataclass(frozen=True)
class SegmentLaunch:
    """One segment's kernels: tiles and grid sizes (programs per batch x head) for each pass. `bwd` is set when
    the segment's backward is the one-kernel band backward (block_m = BLOCK, block_n = CHUNK); dq and dkdv then
    describe the split kernels it replaces."""

    segment: Segment
    fwd: Tiles
    dq: Tiles
    dkdv: Tiles
    fwd_programs: int
    dq_programs: int
    dkdv_programs: int
    group_len: int  # band: the group length; summary: the number of compact summary keys
    fwd_tiles: int  # query-tile x key-tile products the forward computes, per batch x head
    bwd: Tiles | None = None
    bwd_programs: int = 0
    group_bwd: Tiles | None = None  # set when each group fits one query tile: one program per group (BLOCK, BLOCK_N)
    # How every kernel of the segment loads its q, k, v, dO tiles: geometry.TMA_OFF (by pointer), TMA_ROWS (band of step
    # 1, TMA_BAND_LOADS) or TMA_GROUP_ROWS (the stride part, TMA_STRIDE_LOADS); the launcher falls back to pointers
    # where a tensor is not 16-byte addressable.
    tma: int = TMA_OFF
    group_bwd_tma: int = TMA_OFF  # the whole-group backward's k and v loads (TMA_GROUP_KEYS)
    one_grid: bool = False  # dq and dk/dv in one launch (ONE_GRID_BACKWARD)
    summary_keys_tma: int = TMA_OFF  # a summary segment's forward and dq key tiles (TMA_SUMMARY_KEY_LOADS)
    # The split dk/dv kernel's lse2 and D rows by [B * H, n] descriptor (TMA_ROW_STATS): where its query tiles come by
    # TMA_ROWS and n is a multiple of 4; the launcher falls back to pointers where the tiles do (or lse2 is unaligned).
    row_stats_tma: bool = False
    longest_first: bool = False  # programs longest first across heads (SUMMARY_LONGEST_FIRST)
    fwd_local: bool = False  # a summary segment whose forward also runs the next segment's local blocks
    fwd_joined: bool = False  # a band segment whose forward runs inside the summary's (FUSED_LOCAL_FORWARD)
    dkdv_query_rows: bool = False  # a summary segment's dk/dv scores as [queries, keys] (SUMMARY_DKDV_QUERY_ROWS)
    dkdv_first: bool = False  # split dq and dk/dv launched dk/dv first, paired (SUMMARY_DKDV_FIRST)
    reduce_read_back: bool = False  # after the backward's first: dq, dk, dv added by TMA reduction (REDUCE_READ_BACK)

    def order_of(self, kernel: str) -> int:
        """The ORDER constexpr of this segment's `kernel` ("fwd", "dq" or "dkdv"; geometry.TILES_BY_HEAD): a causal
        summary's longest programs are its last query tiles (forward, dq) and its first key tiles (dk/dv)."""
        if not self.longest_first:
            return TILES_BY_HEAD
        return LONGEST_FIRST if kernel == "dkdv" else LAST_TILE_FIRST

    def tma_of(self, kernel: str) -> int:
        """The descriptor layout of this segment's `kernel` ("fwd", "dq" or "dkdv"). A summary segment's differ: its
        dk/dv streams sequence-order query tiles (`tma`: TMA_ROWS), its forward and dq stream compact summary keys
        (`summary_keys_tma`: TMA_SUMMARY_KEYS)."""
        if isinstance(self.segment, SummarySegment) and kernel != "dkdv":
            return self.summary_keys_tma
        return self.tma


@dataclass(frozen=True)
class Plan:
    pattern: Pattern
    n: int
    head_dim: int
    launches: tuple[SegmentLaunch, ...]
    allowed: int  # allowed (query, key) pairs per head, averaged over heads for distinct heads
    # Who computes D = rowsum(dO * O) (first: in the backward's order): "first_dq" (the first segment's dq or
    # whole-group programs, which own every row once), "on_the_fly" (the first segment's one-kernel backward: dq
    # programs store it, dk/dv programs recompute it), or "own_launch" (_delta_kernel, before the segments).
    delta_source: str
    pdl: bool = False  # launches after the first start early (PROGRAMMATIC_LAUNCH)
    alternate_heads: bool = False  # odd launches of a forward or backward take heads from the last
    lean_masks: bool = False  # a band's interior tiles skip their mask (LEAN_MASKS)
    tma_stores: bool = False  # the first segment's outputs stored by descriptor where its tiles allow (TMA_STORES)
    backward_order: tuple[int, ...] = ()  # the backward's segments, as indices into `launches` (empty: theirs)
    arch: int = HOPPER_ARCH  # compute capability x 10 of the GPU it is for (< HOPPER_ARCH: no descriptors, no PDL)
    shared_bytes: int = SM90_SHARED_BYTES  # that GPU's shared memory per block (Tiles.options_for)
    # This plan object's own number: the launchers' call sites key their kept kernels on it (fast_launch.launch_site),
    # so a plan rebuilt after the cache dropped it, or changed by dataclasses.replace, never reuses another's.
    token: int = field(init=False, compare=False, default_factory=itertools.count().__next__)

    @property
    def backward_launches(self) -> tuple[SegmentLaunch, ...]:
        """The segments in the order the backward runs them (SUMMARY_BACKWARD_LAST); the forward runs `launches`."""
        return tuple(self.launches[i] for i in self.backward_order) if self.backward_order else self.launches

    @property
    def tiles(self) -> int:
        """Forward tile products computed per batch x head."""
        return sum(s.fwd_tiles for s in self.launches)

    @property
    def tile_elements(self) -> int:
        return sum(s.fwd_tiles * s.fwd.block_m * s.fwd.block_n for s in self.launches)

    @property
    def element_density(self) -> float:
        """Allowed elements / n^2 (dense causal: about 0.5)."""
        return self.allowed / (self.n * self.n)

    @property
    def tile_density(self) -> float:
        """Elements inside computed tiles / n^2: what the kernels pay for; >= element_density."""
        return self.tile_elements / (self.n * self.n)

    def stats(self) -> dict[str, float | int]:
        return {
            "tiles": self.tiles,
            "tile_density": self.tile_density,
            "element_density": self.element_density,
            "allowed_per_head": self.allowed,
        }


def _pow2_at_least(x: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, x))))


def _tiles(kind: str, head_dim: int, group_len: int, interpret: bool, small_warps: int | None) -> Tiles:
    if interpret:
        bm, bn, warps, stages, *max_registers = INTERPRETER_BWD_TILE if kind == "bwd" else INTERPRETER_TILE
    else:
        bm, bn, warps, stages, *max_registers = TILE_TABLE[(kind, head_dim)]
    fit = max(MIN_TILE, _pow2_at_least(group_len))
    bm, bn = min(bm, fit), min(bn, fit)
    if small_warps and bm * bn <= SMALL_TILE_ELEMENTS:
        warps = min(warps, small_warps)
    return Tiles(bm, bn, warps, stages, *max_registers)


def _group_tiles(head_dim: int, group_len: int, interpret: bool) -> Tiles | None:
    """The whole-group backward's tile for groups of `group_len`, or None where a group does not fit one."""
    bm, bn, warps, stages, *max_registers = INTERPRETER_GROUP_TILE if interpret else TILE_TABLE[("group_bwd", head_dim)]
    if group_len > bm:
        return None
    block = max(MIN_TILE, _pow2_at_least(group_len))
    # One warp per 16 rows (a warp's share of an mma), at most the table's: a shrunk tile keeps each warp's part of
    # the [BLOCK, BLOCK_N] scores the same, and more programs fit on an SM.
    key_tile = block if block <= (INTERPRETER_ONE_STEP_ROWS if interpret else ONE_STEP_ROWS) else min(bn, block)
    # The register cap is the streamed tile's (searched at 128 rows); a one-step group keeps what it compiles to.
    cap = max_registers if key_tile < block else ()
    return Tiles(block, key_tile, max(1, min(warps, block // 16)), stages, *cap)


def _band_fwd_tiles(seg: BandSegment, n: int, group_len: int, t: Tiles) -> int:
    """Count the (query tile, key tile) products the band forward kernel visits, mirroring its loops."""
    total = 0
    for g in range(seg.num_groups):
        first = g * seg.group_stride
        if first >= n:
            break
        length = min(group_len, (n - 1 - first) // seg.step + 1)
        for qt in range(math.ceil(length / t.block_m)):
            hi = min((qt + 1) * t.block_m, length)
            lo = 0 if seg.window == 0 else max(0, qt * t.block_m - seg.window + 1) // t.block_n * t.block_n
            total += math.ceil((hi - lo) / t.block_n)
    return total


def _summary_key_hi(seg: SummarySegment, last_query: int) -> int:
    blocks = last_query // seg.block + (1 if seg.same_block else 0)
    return blocks * seg.summary


def _summary_fwd_tiles(seg: SummarySegment, n: int, t: Tiles) -> int:
    total = 0
    for qt in range(math.ceil(n / t.block_m)):
        last = min((qt + 1) * t.block_m, n) - 1
        total += math.ceil(_summary_key_hi(seg, last) / t.block_n)
    return total


def build_plan(
    pattern: Pattern,
    n: int,
    head_dim: int,
    interpret: bool | None = None,
    fused_band_backward: bool | None = None,
    group_backward: bool | None = None,
    tma_band_loads: bool | None = None,
    tma_stride_loads: bool | None = None,
    tma_group_keys: bool | None = None,
    programmatic_launch: bool | None = None,
    tma_summary_queries: bool | None = None,
    one_grid_backward: bool | None = None,
    tma_summary_keys: bool | None = None,
    summary_backward_last: bool | None = None,
    summary_longest_first: bool | None = None,
    fused_local_forward: bool | None = None,
    summary_dkdv_query_rows: bool | None = None,
    tma_row_stats: bool | None = None,
    summary_dkdv_first: bool | None = None,
    alternate_head_order: bool | None = None,
    lean_masks: bool | None = None,
    reduce_read_back: bool | None = None,
    tma_stores: bool | None = None,
    arch: int = HOPPER_ARCH,
    shared_bytes: int = SM90_SHARED_BYTES,
) -> Plan:
    """The plan for this pattern at this n and head dim; None means the present setting (the interpreter's
    environment variable, FUSED_BAND_BACKWARD, GROUP_BACKWARD, TMA_BAND_LOADS, TMA_STRIDE_LOADS, TMA_GROUP_KEYS,
    PROGRAMMATIC_LAUNCH, TMA_SUMMARY_QUERIES, TMA_SUMMARY_KEY_LOADS, ONE_GRID_BACKWARD, SUMMARY_BACKWARD_LAST,
    SUMMARY_LONGEST_FIRST, FUSED_LOCAL_FORWARD, SUMMARY_DKDV_QUERY_ROWS, TMA_ROW_STATS, SUMMARY_DKDV_FIRST,
    ALTERNATE_HEAD_ORDER, LEAN_MASKS, REDUCE_READ_BACK, TMA_STORES, SMALL_TILE_WARPS), resolved before the cache lookup
    so that changing them counts. The one-kernel band backward, when on, takes every band segment, short groups too.
    `arch` and `shared_bytes` describe the GPU (launch.plan_for passes the device's): below HOPPER_ARCH every
    descriptor and programmatic launch is off, whatever the settings say."""
    interpret = interpreting() if interpret is None else interpret
    fused = FUSED_BAND_BACKWARD if fused_band_backward is None else fused_band_backward
    whole_groups = GROUP_BACKWARD if group_backward is None else group_backward
    tma_band = TMA_BAND_LOADS if tma_band_loads is None else tma_band_loads
    tma_stride = TMA_STRIDE_LOADS if tma_stride_loads is None else tma_stride_loads
    tma_group = TMA_GROUP_KEYS if tma_group_keys is None else tma_group_keys
    pdl = PROGRAMMATIC_LAUNCH if programmatic_launch is None else programmatic_launch
    tma_summary = TMA_SUMMARY_QUERIES if tma_summary_queries is None else tma_summary_queries
    one_grid = ONE_GRID_BACKWARD if one_grid_backward is None else one_grid_backward
    summary_keys = TMA_SUMMARY_KEY_LOADS if tma_summary_keys is None else tma_summary_keys
    summary_last = SUMMARY_BACKWARD_LAST if summary_backward_last is None else summary_backward_last
    longest_first = SUMMARY_LONGEST_FIRST if summary_longest_first is None else summary_longest_first
    local_forward = FUSED_LOCAL_FORWARD if fused_local_forward is None else fused_local_forward
    query_rows = SUMMARY_DKDV_QUERY_ROWS if summary_dkdv_query_rows is None else summary_dkdv_query_rows
    row_stats = TMA_ROW_STATS if tma_row_stats is None else tma_row_stats
    dkdv_first = SUMMARY_DKDV_FIRST if summary_dkdv_first is None else summary_dkdv_first
    alternate = ALTERNATE_HEAD_ORDER if alternate_head_order is None else alternate_head_order
    lean = LEAN_MASKS if lean_masks is None else lean_masks
    reduce = REDUCE_READ_BACK if reduce_read_back is None else reduce_read_back
    stores = TMA_STORES if tma_stores is None else tma_stores
    if arch < HOPPER_ARCH:  # Hopper's own (see HOPPER_ARCH)
        tma_band = tma_stride = tma_group = pdl = tma_summary = summary_keys = row_stats = reduce = stores = False
    return _cached_plan(
        pattern, n, head_dim, interpret, fused, whole_groups and not fused, SMALL_TILE_WARPS, tma_band, tma_stride,
        tma_group, pdl and not interpret, tma_summary, one_grid and not fused, summary_keys, summary_last,
        longest_first, local_forward, query_rows, row_stats, dkdv_first, alternate, lean, reduce, arch, shared_bytes,
        stores,
    )  # fmt: skip


@functools.lru_cache(maxsize=256)
def _cached_plan(
    pattern: Pattern,
    n: int,
    head_dim: int,
    interpret: bool,
    fused: bool,
    whole_groups: bool,
    small_warps: int | None,
    tma_band: bool,
    tma_stride: bool,
    tma_group: bool,
    pdl: bool,
    tma_summary: bool,
    one_grid: bool,
    summary_keys: bool,
    summary_last: bool,
    longest_first: bool,
    local_forward: bool,
    query_rows: bool,
    row_stats: bool,
    dkdv_first: bool,
    alternate: bool = False,
    lean: bool = False,
    reduce: bool = False,
    arch: int = HOPPER_ARCH,
    shared_bytes: int = SM90_SHARED_BYTES,
    stores: bool = False,
) -> Plan:
    launches = []
    segments = pattern.segments(n)
    # The dk/dv launcher zero-fills only for a summary segment first in the backward (it writes summary keys alone).
    assert all(not isinstance(s, SummarySegment) for s in segments[1:]), "a summary segment must come first"
    for seg in segments:
        if isinstance(seg, BandSegment):
            group_len = min(seg.group_len, n)
            fwd, dq, dkdv = (_tiles(k, head_dim, group_len, interpret, small_warps) for k in ("fwd", "dq", "dkdv"))
            group_bwd = _group_tiles(head_dim, group_len, interpret) if whole_groups else None
            bwd = _tiles("bwd", head_dim, group_len, interpret, small_warps) if fused else None
            layout = _tma_layout(seg, n, tma_band, tma_stride)
            launches.append(
                SegmentLaunch(
                    segment=seg,
                    fwd=fwd,
                    dq=dq,
                    dkdv=dkdv,
                    fwd_programs=seg.num_groups * math.ceil(group_len / fwd.block_m),
                    dq_programs=seg.num_groups * math.ceil(group_len / dq.block_m),
                    dkdv_programs=seg.num_groups * math.ceil(group_len / dkdv.block_n),
                    group_len=group_len,
                    fwd_tiles=_band_fwd_tiles(seg, n, group_len, fwd),
                    bwd=bwd,
                    bwd_programs=seg.num_groups * math.ceil(group_len / bwd.block_m) if bwd else 0,
                    group_bwd=group_bwd,
                    tma=layout,
                    group_bwd_tma=layout if group_bwd and tma_group else TMA_OFF,
                )
            )
        else:
            num_keys = math.ceil(n / seg.block) * seg.summary
            fwd, dq = (_tiles(k, head_dim, n, interpret, small_warps) for k in ("fwd_summary", "dq_summary"))
            dkdv_kind = "dkdv_summary_rows" if query_rows else "dkdv_summary"
            dkdv = _tiles(dkdv_kind, head_dim, num_keys, interpret, small_warps)
            launches.append(
                SegmentLaunch(
                    segment=seg,
                    fwd=fwd,
                    dq=dq,
                    dkdv=dkdv,
                    fwd_programs=math.ceil(n / fwd.block_m),
                    dq_programs=math.ceil(n / dq.block_m),
                    dkdv_programs=math.ceil(num_keys / dkdv.block_n),
                    group_len=num_keys,
                    fwd_tiles=_summary_fwd_tiles(seg, n, fwd),
                    tma=TMA_ROWS if tma_summary else TMA_OFF,
                    # The [n / l, l] view needs n a multiple of l; a power-of-two c splits key tiles into whole boxes.
                    summary_keys_tma=(
                        TMA_SUMMARY_KEYS
                        if summary_keys and n % seg.block == 0 and _pow2_at_least(seg.summary) == seg.summary
                        else TMA_OFF
                    ),
                    longest_first=longest_first,
                    dkdv_query_rows=query_rows,
                )
            )
    # Only the split dk/dv kernels stream query tiles by TMA_ROWS and their rows' statistics with them; a [B * H, n]
    # float32 descriptor needs 16-byte row strides.
    for i, launch in enumerate(launches):
        split = launch.group_bwd is None and launch.bwd is None
        if row_stats and n % 4 == 0 and split and launch.tma_of("dkdv") == TMA_ROWS:
            launches[i] = dataclasses.replace(launch, row_stats_tma=True)
        seg = launch.segment
        whole_tiles = isinstance(seg, BandSegment) and (
            seg.num_groups == 1
            or (launch.group_len % launch.dq.block_m == 0 and launch.group_len % launch.dkdv.block_n == 0)
        )
        if reduce and split and whole_tiles and launch.tma == TMA_ROWS:
            launches[i] = dataclasses.replace(launches[i], reduce_read_back=True)
    if local_forward and len(launches) == 2 and _local_blocks_join(launches[0], segments[1]):
        launches[0] = dataclasses.replace(launches[0], fwd_local=True)
        launches[1] = dataclasses.replace(launches[1], fwd_joined=True)
    order = tuple(range(len(launches)))
    if summary_last and isinstance(segments[0], SummarySegment) and len(segments) > 1:
        if covers_every_row_once(segments[1], n):
            order = (*order[1:], 0)
    # The backward's first segment may compute D in its dq programs, which every dk/dv program reads: never one grid.
    for i in order[1:] if one_grid else ():
        split = launches[i].group_bwd is None and launches[i].bwd is None
        if split and _same_launch_options(launches[i].dq, launches[i].dkdv):
            launches[i] = dataclasses.replace(launches[i], one_grid=True)
    for i in order[1:] if dkdv_first else ():  # after the first: D is written by then
        launch = launches[i]
        split = launch.group_bwd is None and launch.bwd is None and not launch.one_grid
        if split and isinstance(launch.segment, SummarySegment):
            launches[i] = dataclasses.replace(launch, dkdv_first=True)
    first = launches[order[0]]
    return Plan(
        pattern=pattern,
        n=n,
        head_dim=head_dim,
        launches=tuple(launches),
        allowed=pattern.allowed_count(n, 1),
        delta_source=_delta_source(first, n),
        pdl=pdl,
        alternate_heads=alternate,
        lean_masks=lean,
        tma_stores=stores,
        backward_order=order if order != tuple(range(len(launches))) else (),
        arch=arch,
        shared_bytes=shared_bytes,
    )


build_plan.cache_clear = _cached_plan.cache_clear  # after editing TILE_TABLE (benchmarks/tune_tiles.py)


def _local_blocks_join(summary: SegmentLaunch, local: Segment) -> bool:
    """Whether the summary forward's programs can run fixed attention's local blocks too: its merged head (earlier
    windows' summaries) followed by causal windows of l rows, each forward query tile inside one window."""
    seg = summary.segment
    return (
        isinstance(seg, SummarySegment)
        and not seg.same_block
        and isinstance(local, BandSegment)
        and (local.step, local.group_len, local.group_stride, local.window, local.exclude_self)
        == (1, seg.block, seg.block, 0, False)
        and seg.block % summary.fwd.block_m == 0
    )


def _same_launch_options(dq: Tiles, dkdv: Tiles) -> bool:
    """Whether one grid can run both kernels' programs at their tuned warps and stages (the register cap is
    dk/dv's, which dq's programs stay under: 82 against 128 registers at head dim 64, kernel_resources)."""
    return (dq.num_warps, dq.num_stages) == (dkdv.num_warps, dkdv.num_stages)


def _tma_layout(seg: BandSegment, n: int, band: bool, stride: bool) -> int:
    if seg.step == 1:
        return TMA_ROWS if band else TMA_OFF
    # The [l, n / l] view needs n a multiple of l; one group per residue (g < l) keeps element [g, t] at t * l + g.
    is_stride_part = seg.group_stride == 1 and seg.num_groups == seg.step and n % seg.step == 0
    return TMA_GROUP_ROWS if stride and is_stride_part else TMA_OFF


def _delta_source(first: SegmentLaunch, n: int) -> str:
    if not covers_every_row_once(first.segment, n):
        return "own_launch"
    if first.bwd is None:
        return "first_dq"
    # In one launch, a dk/dv program needs D of rows that other programs own: recomputing it costs an O tile per
    # query tile it streams, which pays only where those are few (not for dense causal's whole group).
    if first.segment.window > 0 or first.group_len <= DELTA_ON_THE_FLY_MAX_ROWS:
        return "on_the_fly"
    return "own_launch"


def covers_every_row_once(seg: Segment, n: int) -> bool:
    """Do the dq programs of this segment own each of the n rows exactly once?

    Summary segments: their dq programs own query tiles in sequence order, so yes. Band segments: yes for
    contiguous runs that tile the sequence (step 1, group_stride = group_len) and for the residue classes of a
    stride (group_stride 1, one group per residue); anything else answers no and D gets its own launch."""
    if isinstance(seg, SummarySegment):
        return True
    if seg.step == 1:
        return (seg.num_groups == 1 or seg.group_stride == seg.group_len) and seg.num_groups * seg.group_len >= n
    return seg.group_stride == 1 and min(seg.step, n) <= seg.num_groups <= seg.step and seg.group_len * seg.step >= n
