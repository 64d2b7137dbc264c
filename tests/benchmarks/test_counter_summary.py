"""counter_summary reads Nsight Compute's raw and source pages (CSV); here on two small hand-made pages."""

import pytest

from benchmarks import counter_summary

STALL = "smsp__average_warps_issue_stalled_{}_per_issue_active.ratio"
RAW = f""""ID","Kernel Name","gpu__time_duration.sum","{STALL.format("barrier")}","{STALL.format("wait")}"
"","","usecond","ratio","ratio"
"0","_fwd","39.2","0.51","0.01"
"1","_bwd","100.1","2.12","0.02"
"""
SOURCE = """"Kernel Name","_fwd",
"Address","Source","Warp Stall Sampling (All Samples)","Instructions Executed"
"0x1","      FMUL R1, R2, R3","10","300"
"0x2","@P1   FSEL R1, R2, RZ, P0","30","100"
"Kernel Name","_bwd",
"Address","Source","Warp Stall Sampling (All Samples)","Instructions Executed"
"0x1","      HGMMA.64x64x16.F32.BF16 R0, gdesc[UR4], RZ","5","1,000"
"""


def test_summary_names_kernels_units_stalls_and_opcodes(tmp_path, capsys):
    (tmp_path / "c-raw.csv").write_text(RAW)
    (tmp_path / "c-source.csv").write_text(SOURCE)
    counter_summary.main([str(tmp_path / "c")])
    text = capsys.readouterr().out
    assert "kernel: 0 _fwd | 1 _bwd" in text and "time (usecond): 39.2 | 100.1" in text
    assert "barrier: 0.51 | 2.12" in text and "wait:" not in text  # stalls under 0.05 cycles are left out
    assert "FMUL        75.0% of instructions,  25.0% of samples" in text  # predicates stripped: FSEL counted too
    assert "FSEL        25.0% of instructions,  75.0% of samples" in text
    assert "1 _bwd: 1000 warp instructions" in text and "HGMMA" in text


def test_missing_pages_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        counter_summary.main([str(tmp_path / "nothing")])
    assert "missing" in capsys.readouterr().err
