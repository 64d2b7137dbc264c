"""dram_model: the traffic file's parsing and the per-kernel model, on a hand-made call and on the committed files."""

from pathlib import Path

import pandas as pd
import pytest

from benchmarks import dram_model

DRAM = """# a card; commit x; date
== strided:256:1:16, ncu --cache-control none --replay-mode application --metrics m
kernel: 0 _fwd | 1 _bwd
time (us): 10 | 20 | sum 30
DRAM read (Mbyte): 30 | 0.5 | sum 30.5
DRAM written (Kbyte): 10000 | 500 | sum 10500
L2 hit rate (%): 40 | 50

== strided:256:1:16, ncu --cache-control all --replay-mode application --metrics m
kernel: 0 _fwd | 1 _bwd
time (ms): 1 | 2 | sum 3
DRAM read (Gbyte): 1 | 1 | sum 2
DRAM written (Mbyte): 1 | 1 | sum 2
"""


def _tables():
    row = {"pass": "fwd+bwd", "n": 256, "batch": 1, "head_dim": 64, "heads": 16, "dtype": "bfloat16", "status": "ok"}
    kernels = pd.DataFrame(
        [
            {**row, "backend": "triton", "pattern": "strided", "local_attn_ctx": 16, "gpu": "A", "graph_ms": 0.015,
             "median_ms": 0.02, "commit": "c", "date": "d"},
            {**row, "backend": "sdpa", "pattern": "all", "local_attn_ctx": None, "gpu": "B", "graph_ms": None,
             "median_ms": 0.3, "commit": "c", "date": "d"},
        ]
    )  # fmt: skip
    ceilings = pd.DataFrame({"gpu": ["A", "B"], "copy_gbps": [4000.0, 2000.0]})
    return kernels, ceilings


def test_sections_are_read_in_microseconds_and_megabytes(tmp_path):
    (tmp_path / "d.txt").write_text(DRAM)
    kept = dram_model.read_traffic(tmp_path / "d.txt")
    assert kept.case == "strided:256:1:16" and kept.kernels == ["_fwd", "_bwd"]
    assert kept.time_us == [10, 20] and kept.bytes_mb == pytest.approx([40, 1])
    flushed = dram_model.read_traffic(tmp_path / "d.txt", cache="all")
    assert flushed.time_us == [1000, 2000] and flushed.read_mb == [1000, 1000]


def test_each_kernel_keeps_its_time_unless_its_bytes_take_longer_on_the_other_card(tmp_path):
    (tmp_path / "d.txt").write_text(DRAM)
    kernels, ceilings = _tables()
    text = dram_model.predict(dram_model.read_traffic(tmp_path / "d.txt"), kernels, ceilings, "A", "B")
    # 40 MB at 2 MB/us (B's copy rate) is 20 us > the forward's 10; the backward's 1 MB stays at its 20 us. The graph
    # time over ncu's sum (15 / 30) scales the call: (20 + 20) * 0.5 = 20 us at 100%, and 300 / 20 = 15x SDPA.
    assert "41 MB per call" in text and "graph over ncu 0.500" in text
    assert "at most 14.6-14.6x SDPA" in text  # 41 MB / 2 MB/us = 20.5 us
    assert "up to 100% of its copy rate: 20.0 us, 15.00-15.00x SDPA" in text
    assert "up to 80% of its copy rate: 22.5 us" in text  # forward 40 / 1.6 = 25 us
    with pytest.raises(ValueError, match="no copy rate of 'C'"):
        dram_model.predict(dram_model.read_traffic(tmp_path / "d.txt"), kernels, ceilings, "A", "C")


def test_committed_files_parse_and_missing_inputs_are_named(capsys):
    for path in Path("results/profiles").glob("dram-strided_*.txt"):
        traffic = dram_model.read_traffic(path)
        assert len(traffic.kernels) == len(traffic.time_us) == len(traffic.bytes_mb) > 0
    with pytest.raises(SystemExit):
        dram_model.main(["no/such/file.txt"])
    assert "missing no/such/file.txt" in capsys.readouterr().err
