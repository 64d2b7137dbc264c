"""The resource report compiles the real launches for sm_90 on a machine without a GPU, reads registers and
spills, and turns them into programs per SM; bad cases are refused before anything compiles."""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import kernel_resources as kr
from sparse.kernels import plan


@pytest.mark.parametrize(
    "registers, shared, warps, expected",
    [
        (255, 24576, 4, (2, "registers")),  # 255 x 32 rounds up to 8,192 registers a warp: 32,768 a program
        (128, 24576, 4, (4, "registers")),
        (96, 24576, 4, (5, "registers")),
        (64, 116736, 4, (1, "shared memory")),  # 114 KB + the 1 KB each program reserves: one fits in 228 KB
        (24, 1024, 8, (8, "warps")),
    ],
)
def test_programs_per_sm_follows_the_sm90_limits(registers, shared, warps, expected):
    assert kr.programs_per_sm(registers, shared, warps) == expected


def test_every_launch_of_a_call_is_compiled_and_measured(tmp_path):
    """In a process of its own: the test session runs the kernels under TRITON_INTERPRET=1, which cannot compile."""
    out = tmp_path / "resources.csv"
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    args = ["strided:200:1:16", "--heads", "2", "--head-dim", "64", "--out", str(out), "--sass-digest"]
    done = subprocess.run([sys.executable, "-m", "benchmarks.kernel_resources", *args], env=env, capture_output=True,
                          text=True, timeout=600, cwd=Path(kr.__file__).parent.parent)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    launch_lines = [line for line in done.stdout.splitlines() if "_kernel " in line]
    # the stride part's groups of 13 rows fit one tile: one whole-group backward, then the band's dq and dk/dv (in one
    # grid with ONE_GRID_BACKWARD)
    band = ["_dq_dkdv_kernel"] if plan.ONE_GRID_BACKWARD else ["_sparse_dq_kernel", "_sparse_dkdv_kernel"]
    expected = ["_sparse_fwd_kernel"] * 2 + ["_group_bwd_kernel", *band]
    assert len(launch_lines) == len(expected)
    assert all(re.fullmatch(r"[0-9a-f]{16}", line.split()[-1]) for line in launch_lines)
    # From the machine code (kr.wgmma_state): the 16-row tiles use no wgmma; the band forward, under its register cap,
    # waits on every product (ptxas says nothing about it); the band backward's products overlap.
    assert [line.split()[-2] for line in launch_lines] == ["none", "serial", "none", *["async"] * len(band)]
    rows = list(csv.DictReader(out.open()))
    kernels = [r["kernel"] for r in rows]
    assert kernels == expected
    assert (rows[2]["block_m"], rows[2]["block_n"], rows[2]["num_warps"]) == ("16", "16", "1")
    for r in rows:
        assert 0 < int(r["registers"]) <= 255 and int(r["programs_per_sm"]) >= 1 and r["target"] == "sm_90"
        assert r["commit"] and r["triton"] and r["date"]
    cap = plan.TILE_TABLE[("dkdv", 64)][4]  # head dim 64's dk/dv is capped
    capped = [r for r in rows if r["kernel"] in ("_sparse_dkdv_kernel", "_dq_dkdv_kernel")]  # dk/dv's options
    assert all(r["max_registers"] == str(cap) and int(r["registers"]) <= cap for r in capped)
    # the stride part's groups (13 rows) shrink the tiles to 16; the band keeps the table's
    assert (rows[0]["block_m"], rows[0]["block_n"]) == ("16", "16")


def test_wgmma_state_reads_the_hgmma_waits():
    """Issued asynchronously, a chain has `gsb0` on its last HGMMA only; serialized, on every one, each waited on."""
    chained = """
        /*1b40*/                   HGMMA.64x32x16.F32.BF16 R56, gdesc[UR8], RZ, !UPT ;
        /*1b90*/                   HGMMA.64x32x16.F32.BF16 R56, gdesc[UR28], R56 ;
        /*1bb0*/                   HGMMA.64x32x16.F32.BF16 R56, gdesc[UR36], R56, gsb0 ;
        /*1bc0*/                   WARPGROUP.DEPBAR.LE gsb0, 0x0 ;"""
    serialized = """
        /*1bd0*/                   HGMMA.64x32x16.F32.BF16 R56, gdesc[UR8], RZ, !UPT, gsb0 ;
        /*1c50*/                   WARPGROUP.DEPBAR.LE gsb0, 0x0 ;
        /*1c60*/                   WARPGROUP.ARRIVE ;
        /*1c70*/                   HGMMA.64x32x16.F32.BF16 R56, gdesc[UR28], R56, gsb0 ;
        /*1c80*/                   WARPGROUP.DEPBAR.LE gsb0, 0x0 ;"""
    assert kr.wgmma_state(chained) == "async"
    assert kr.wgmma_state(serialized) == "serial"
    assert kr.wgmma_state("        /*0100*/                   HMMA.16816.F32.BF16 R4, R8, R12, R4 ;") == "none"


def test_float32_calls_fit_in_shared_memory(tmp_path):
    """TILE_TABLE's stages are tuned for 16-bit inputs; float32 tiles take twice the shared memory and the launchers cap
    their stages (plan.Tiles.options_for). Fixed attention's summary dk/dv at head dim 128 (64 x 64, three stages, query
    tiles by descriptor) asked for 263,184 bytes in float32, over sm_90's 232,448, before that cap: every launch of the
    GPU tests' float32 call must fit at least one program per SM. Compiled in a process of its own, as above."""
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    args = ["fixed:1000:1:128:32", "--heads", "1", "--head-dim", "128", "--dtype", "float32"]
    done = subprocess.run([sys.executable, "-m", "benchmarks.kernel_resources", *args], env=env, capture_output=True,
                          text=True, timeout=600, cwd=Path(kr.__file__).parent.parent)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "float32" in done.stdout.splitlines()[0]
    launch_lines = [line for line in done.stdout.splitlines() if "_kernel " in line]
    assert len(launch_lines) >= 4 and "_sparse_dkdv_kernel" in done.stdout
    assert not any("does not fit" in line for line in launch_lines), done.stdout
    assert all(int(line.split()[7]) >= 1 for line in launch_lines), done.stdout  # programs per SM


def test_rows_of_other_dtypes_are_printed_not_appended(capsys):
    with pytest.raises(SystemExit):
        kr.main(["fixed:1000:1:128:32", "--dtype", "float32", "--out", "x.csv"])
    assert "bf16 rows" in capsys.readouterr().err


def test_a_bad_case_is_refused_before_compiling(monkeypatch, capsys):
    monkeypatch.setattr(kr, "launch_rows", lambda *a: pytest.fail("compiled despite a bad case"))
    monkeypatch.setattr(plan, "interpreting", lambda: False)
    with pytest.raises(SystemExit):
        kr.main(["strided:12288:1:128", "strided:100:1"])  # strided needs local_attn_ctx
    assert "bad case" in capsys.readouterr().err


def test_under_the_interpreter_it_says_what_to_do(capsys):
    with pytest.raises(SystemExit):
        kr.main(["strided:256:1:16"])  # the test session sets TRITON_INTERPRET=1
    assert "unset it" in capsys.readouterr().err


def test_programs_per_sm_follows_other_archs_limits():
    """--arch 86 (RTX 30xx, A10): 99 KB per program at most, 100 KB and 48 warps per SM."""
    assert kr.programs_per_sm(128, 107520, 4, kr.SMS[86]) == (0, "shared memory per program")
    assert kr.programs_per_sm(64, 107520, 4) == (2, "shared memory")  # on sm_90 it fits
    assert kr.programs_per_sm(64, 49152, 4, kr.SMS[86]) == (2, "shared memory")
    assert kr.programs_per_sm(24, 1024, 8, kr.SMS[86]) == (6, "warps")


@pytest.mark.parametrize(
    "arch, case, head_dim",
    [
        (80, "strided:200:1:16", 64),  # A100: no descriptors, no programmatic launch (ptxas refuses griddepcontrol)
        (86, "fixed:1000:1:128:32", 128),  # 99 KB: the summary dk/dv asks 107,520 bytes at the table's three stages
    ],
)
def test_older_archs_compile_and_fit(arch, case, head_dim):
    """The plan for an older GPU compiles for it, and every launch fits its shared memory (plan.HOPPER_ARCH,
    SMALL_SHARED_BYTES). Compiled in a process of its own, as above."""
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    args = [case, "--heads", "1", "--head-dim", str(head_dim), "--arch", str(arch), "--sms", "84"]
    done = subprocess.run([sys.executable, "-m", "benchmarks.kernel_resources", *args], env=env, capture_output=True,
                          text=True, timeout=600, cwd=Path(kr.__file__).parent.parent)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"# target sm_{arch}")
    launch_lines = [line for line in done.stdout.splitlines() if "_kernel " in line]
    assert len(launch_lines) >= 4 and not any("does not fit" in line for line in launch_lines), done.stdout
    assert all(int(line.split()[7]) >= 1 and line.split()[-1] == "none" for line in launch_lines), done.stdout
    if arch == 86:
        assert all("s3" not in line.split()[3] for line in launch_lines), done.stdout  # at most two stages
