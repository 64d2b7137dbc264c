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


def test_raw_page_alone_sums_time_and_dram_over_the_call(tmp_path, capsys):
    """gpu_session.sh's `dram` step writes only a raw page of four metrics: no stalls, no instruction mix."""
    (tmp_path / "d-raw.csv").write_text(
        '"ID","Kernel Name","gpu__time_duration.sum","dram__bytes_read.sum","lts__t_sector_hit_rate.pct"\n'
        '"","","usecond","Mbyte","%"\n"0","_fwd","36.5","75.5","40.1"\n"1","_bwd","98.7","126.6","55.0"\n'
    )
    counter_summary.main([str(tmp_path / "d")])
    text = capsys.readouterr().out
    assert "time (usecond): 36.5 | 98.7 | sum 135.2" in text
    assert "DRAM read (Mbyte): 75.5 | 126.6 | sum 202.1" in text
    assert "L2 hit rate (%): 40.1 | 55 |" not in text and "L2 hit rate (%): 40.1 | 55" in text  # rates are not summed
    assert "stall reasons" not in text and "instruction mix is left out" in text
