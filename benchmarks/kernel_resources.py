"""The compiler's resource report for every kernel launch of one attention call: registers and spills per thread,
shared memory, and how many programs that leaves on one SM. Needs no GPU: the launchers run with their launches
recorded instead of made, and each recorded launch is compiled the way Triton's JIT would (same constexprs, same
specialization of the arguments) for a named target, by default sm_90 (H100, H200).

    python -m benchmarks.kernel_resources                                  # issue 7's three missed cases
    python -m benchmarks.kernel_resources strided:3072:8:96 --head-dim 128 --heads 2
    python -m benchmarks.kernel_resources fixed:1000:1:128:32 --head-dim 128 --heads 1 --dtype float32   # fits?
    python -m benchmarks.kernel_resources --out results/kernel_resources.csv   # append rows with provenance

    python -m benchmarks.kernel_resources --sass-digest > before.txt      # then refactor, run again, diff:
                                                                          # equal digests = the same machine code

A case is mode:n:batch[:local_attn_ctx[:summary_ctx]], in bf16 unless --dtype says otherwise (printed only: the CSV's
rows are bf16). Per launch it prints the kernel, its tiles,
registers per thread (`cuobjdump --dump-resource-usage`), spill bytes (STACK + LOCAL), shared memory per program,
the programs per SM each limit allows (registers, shared memory, warps) and their minimum, and the launch's waves:
programs / (SMs x programs per SM), and whether ptxas serialized its wgmma instructions, read from the machine code
(`serial`: each matrix product waits for the one before; `async`: they overlap; `none`: no wgmma, as in tiles of fewer
than 64 rows; printed only, the CSV's columns predate it). A kernel whose
programs each make a few dependent loads runs at the latency of those loads times its waves; fewer programs per SM
means less latency hidden (benchmarks/KERNEL_NOTES.md).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.compiler.compiler import make_backend
from triton.runtime.jit import create_function_from_signature

import sparse
from benchmarks.provenance import provenance
from benchmarks.recorder import append_rows
from sparse.kernels import launch as launch_module
from sparse.kernels import plan as plan_module

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
DEFAULT_CASES = ("strided:12288:1:128", "fixed:12288:1:128:32", "strided:3072:8:96")
COLUMNS = [
    "case", "head_dim", "launch", "kernel", "block_m", "block_n", "num_warps", "num_stages", "max_registers",
    "registers", "spill_bytes", "shared_bytes", "programs_per_sm", "limited_by", "programs", "waves", "target", "sms",
    "commit", "torch", "triton", "date",
]  # fmt: skip


@dataclass(frozen=True)
class SM:
    """Per-SM limits of a compute capability, by default 9.0 (CUDA C Programming Guide, table of technical
    specifications)."""

    registers: int = 65536
    shared_bytes: int = 233472  # 228 KB, of which each resident program also reserves 1 KB
    warps: int = 64
    programs: int = 32
    register_unit: int = 256  # registers are allocated per warp in units of 256
    shared_per_block: int = 232448  # the most one program may ask for (227 KB): what build_plan's shared_bytes is


# The same table's other columns, for `--arch`: Ampere's A100 (8.0), its GeForce and workstation parts (8.6), Ada (8.9).
SMS = {
    90: SM(),
    80: SM(shared_bytes=167936, shared_per_block=166912),
    86: SM(shared_bytes=102400, warps=48, programs=16, shared_per_block=101376),
    89: SM(shared_bytes=102400, warps=48, programs=24, shared_per_block=101376),
}


def programs_per_sm(registers: int, shared_bytes: int, num_warps: int, sm: SM = SM()) -> tuple[int, str]:
    """How many programs of this kernel one SM can hold, and which limit decides it."""
    per_warp = math.ceil(registers * 32 / sm.register_unit) * sm.register_unit
    limits = {
        "shared memory per program": 0 if shared_bytes > sm.shared_per_block else math.inf,  # first: named on a tie
        "registers": sm.registers // (per_warp * num_warps),
        "shared memory": sm.shared_bytes // (shared_bytes + 1024),
        "warps": sm.warps // num_warps,
        "programs": sm.programs,
    }
    name = min(limits, key=limits.get)  # 0 programs: the kernel cannot launch (Triton raises OutOfResources)
    return limits[name], name


@dataclass
class RecordedLaunch:
    kernel: object
    grid: tuple[int, ...]
    args: tuple
    options: dict


@contextmanager
def recorded_launches(records: list[RecordedLaunch], arch: int = 90):
    """The launchers, compiled-kernel plans and dot mode of a run on a GPU of compute capability `arch` (x 10), with
    launches recorded instead of made."""
    saved = launch_module._launch_at, launch_module.plan_for, launch_module.interpreting
    launch_module._launch_at = lambda site, kernel, grid, args, options: records.append(
        RecordedLaunch(kernel, grid, args, options())
    )
    target = dict(arch=arch, shared_bytes=SMS[arch].shared_per_block)
    launch_module.plan_for = lambda q, p: plan_module.build_plan(p, q.shape[2], q.shape[3], interpret=False, **target)
    launch_module.interpreting = lambda: False
    try:
        yield
    finally:
        launch_module._launch_at, launch_module.plan_for, launch_module.interpreting = saved


def parse_case(spec: str) -> tuple[sparse.patterns.Pattern, int, int]:
    """mode:n:batch[:local_attn_ctx[:summary_ctx]] -> (pattern, n, batch); a bad spec raises ValueError naming it."""
    mode, n, batch, *ctx = spec.split(":") if spec.count(":") >= 2 else (None, None, None)
    if mode is None or len(ctx) > 2:
        raise ValueError(f"bad case {spec!r}: not mode:n:batch[:local_attn_ctx[:summary_ctx]]")
    try:
        n, batch, *ctx = (int(x) for x in (n, batch, *ctx))
    except ValueError:
        raise ValueError(f"bad case {spec!r}: n, batch, local_attn_ctx and summary_ctx are integers") from None
    if n < 1 or batch < 1:
        raise ValueError(f"bad case {spec!r}: n and batch must be >= 1")
    try:
        pattern = sparse.pattern(mode, local_attn_ctx=ctx[0] if ctx else None, summary_ctx=ctx[1] if ctx[1:] else None)
    except (ValueError, TypeError) as err:
        raise ValueError(f"bad case {spec!r}: {err}") from None
    return pattern, n, batch


def record_call(
    spec: str, heads: int, head_dim: int, dtype: torch.dtype = torch.bfloat16, arch: int = 90
) -> list[RecordedLaunch]:
    """Every launch of one forward + backward of the case on a GPU of compute capability `arch`, in order (tensors on
    the meta device: no memory)."""
    p, n, batch = parse_case(spec)
    q, k, v, do = (torch.empty(batch, heads, n, head_dim, dtype=dtype, device="meta") for _ in range(4))
    records: list[RecordedLaunch] = []
    with recorded_launches(records, arch):
        out, lse2 = launch_module.sparse_forward(q, k, v, p, head_dim**-0.5)
        launch_module.sparse_backward(do, q, k, v, out, lse2, p, head_dim**-0.5)
    return records


def compile_launch(record: RecordedLaunch, target: GPUTarget):
    """Compile as JITFunction.run would for this launch, minus the driver: Triton's own binder specializes the
    arguments (ints divisible by 16 or equal to 1, 16-byte aligned tensors) and picks the constexprs."""
    kernel = record.kernel
    backend = make_backend(target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    options = dict(record.options)
    bound_args, specialization, _ = binder(*record.args, **options)
    parsed, signature, constexprs, attrs = kernel._pack_args(backend, options, bound_args, specialization, None)
    return triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target, options=parsed.__dict__)


def cuobjdump(compiled, flag: str) -> str:
    """cuobjdump's output for the kernel's cubin (Triton's wheel ships the tool)."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        return subprocess.run([tool, flag, cubin.name], capture_output=True, text=True, check=True).stdout


def sass_digest(sass: str) -> str:
    """A digest of the kernel's machine instructions alone (`sass`: cuobjdump --dump-sass): the cubin's bytes also hold
    source line numbers, which any edit above a kernel moves."""
    instructions = re.findall(r"/\*[0-9a-f]{4,}\*/\s+([^;]*);", sass)
    return hashlib.sha256("\n".join(instructions).encode()).hexdigest()[:16]


def wgmma_state(sass: str) -> str:
    """'serial', 'async' or 'none' (no wgmma) for a kernel's SASS. A matrix product of K > 16 is a chain of HGMMA
    instructions on one accumulator; issued asynchronously, only the chain's last carries `gsb0` (the group the
    following WARPGROUP.DEPBAR waits on). Serialized, every HGMMA carries it and is waited on before the next issues, so
    each product waits for the one before. 'async' says at least one chain overlaps, not that every one does.

    Why the machine code and not ptxas's notes: ptxas notes serialization for some causes (C7515, "non wgmma
    instructions defining accumulator registers"; C7512, "insufficient register resources") but not all: the head dim 64
    forward under its 76-register cap (TILE_TABLE) is serialized with no note, where at 78 or 80 registers ptxas says
    C7512 and uncapped (82) it issues the chain asynchronously. This column read only C7515 before, and called that
    forward async."""
    products = re.findall(r"HGMMA\.[^;]*;", sass)
    if not products:
        return "none"
    return "serial" if all("gsb0" in product for product in products) else "async"


def resource_usage(compiled) -> dict[str, int]:
    """Registers and spill bytes from cuobjdump, shared memory from the kernel's metadata."""
    report = cuobjdump(compiled, "--dump-resource-usage")
    line = next(line for line in report.splitlines() if "REG:" in line)
    fields = dict(item.split(":", 1) for item in line.split() if ":" in item and item.split(":", 1)[1].isdigit())
    return {
        "registers": int(fields["REG"]),
        "spill_bytes": int(fields.get("STACK", 0)) + int(fields.get("LOCAL", 0)),
        "shared_bytes": int(compiled.metadata.shared),
    }


def launch_rows(
    spec: str, heads: int, head_dim: int, arch: int, sms: int, digest: bool = False, dtype: torch.dtype = torch.bfloat16
) -> list[dict]:
    target = GPUTarget("cuda", arch, 32)
    rows = []
    for index, record in enumerate(record_call(spec, heads, head_dim, dtype, arch)):
        compiled = compile_launch(record, target)
        sass = cuobjdump(compiled, "--dump-sass")
        usage = resource_usage(compiled)
        options = record.options
        warps = options.get("num_warps", 4)
        per_sm, limit = programs_per_sm(usage["registers"], usage["shared_bytes"], warps, SMS[arch])
        programs = math.prod(record.grid)
        rows.append({
            "case": spec, "head_dim": head_dim, "launch": index, "kernel": record.kernel.__name__,
            # _dq_dkdv_kernel: its dk/dv tile (the grid's first programs, and its launch options).
            "block_m": options.get("BLOCK_M", options.get("BLOCK", options.get("KV_BLOCK_M"))),
            "block_n": options.get("BLOCK_N", options.get("CHUNK", options.get("BLOCK", options.get("KV_BLOCK_N")))),
            "num_warps": warps, "num_stages": options.get("num_stages", 3), "max_registers": options.get("maxnreg", ""),
            **usage, "programs_per_sm": per_sm, "limited_by": limit, "programs": programs,
            "waves": round(programs / (sms * per_sm), 2) if per_sm else "does not fit", "target": f"sm_{arch}",
            "sms": sms, "wgmma": wgmma_state(sass) if arch >= 90 else "none",
        })  # fmt: skip
        if digest:
            rows[-1]["sass"] = sass_digest(sass)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", default=list(DEFAULT_CASES), help="mode:n:batch[:l[:c]] (bf16)")
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--head-dim", type=int, default=64, choices=(32, 64, 128))
    parser.add_argument(
        "--arch", type=int, default=90, choices=sorted(SMS), help="compute capability x 10 to plan and compile for "
        "(90: H100/H200; 80: A100; 86: RTX 30xx, A10, A40; 89: RTX 40xx, L4, L40)",
    )  # fmt: skip
    parser.add_argument(
        "--sms", type=int, default=132, help="SMs of the card the waves are counted on (H100/H200 SXM: 132)"
    )
    parser.add_argument("--out", help="append the rows, with provenance, to this CSV")
    parser.add_argument("--sass-digest", action="store_true", help="also print a digest of each kernel's instructions")
    parser.add_argument(
        "--dtype", default="bfloat16", choices=DTYPES, help="the inputs' dtype (the launchers pick stages by it)"
    )
    args = parser.parse_args(argv)
    if args.out and args.dtype != "bfloat16":
        parser.error("--out appends bf16 rows (kernel_resources.csv has no dtype column); print other dtypes only")
    if plan_module.interpreting():
        parser.error("TRITON_INTERPRET=1 is set: the kernels were loaded for the interpreter and cannot be compiled; "
                     "unset it")  # fmt: skip
    for spec in args.cases:  # refuse a bad case before compiling anything
        try:
            parse_case(spec)
        except (ValueError, TypeError) as err:
            parser.error(str(err))
    prov = provenance()
    stamp = {key: prov[key] for key in ("commit", "torch", "triton", "date")}
    print(
        f"# target sm_{args.arch}, {args.sms} SMs; {args.dtype}; torch {prov['torch']}; triton {prov['triton']}; "
        f"commit {prov['commit']}"
    )
    print(f"{'case':<22} {'#':>2} {'kernel':<20} {'tiles':>12} {'regs':>4} {'spill':>5} {'smem':>6} {'per SM':>6} "
          f"{'limit':<13} {'programs':>8} {'waves':>6} wgmma")  # fmt: skip
    for spec in args.cases:
        rows = launch_rows(spec, args.heads, args.head_dim, args.arch, args.sms, args.sass_digest, DTYPES[args.dtype])
        for r in rows:
            cap = f"/{r['max_registers']}" if r["max_registers"] else ""
            tiles = f"{r['block_m']}x{r['block_n']}w{r['num_warps']}s{r['num_stages']}{cap}"
            print(
                f"{spec:<22} {r['launch']:>2} {r['kernel']:<20} {tiles:>12} {r['registers']:>4} {r['spill_bytes']:>5} "
                f"{r['shared_bytes']:>6} {r['programs_per_sm']:>6} {r['limited_by']:<13} {r['programs']:>8} "
                f"{r['waves']:>6} {r['wgmma']:<6}" + (f" {r['sass']}" if args.sass_digest else ""),
                flush=True,
            )
        if args.out:
            printed_only = ("sass", "wgmma")  # kernel_resources.csv's columns predate them
            append_rows(
                args.out, [{**{k: v for k, v in r.items() if k not in printed_only}, **stamp} for r in rows], COLUMNS
            )


if __name__ == "__main__":
    main()
