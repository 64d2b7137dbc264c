"""hw_counters needs a GPU (and Nsight Compute to be of use); here: every bad argument fails before any GPU work."""

import pytest

from benchmarks import hw_counters


@pytest.mark.parametrize(
    "argv, text",
    [
        (["strided:12"], "not mode:n:batch"),
        (["bogus:12:1"], "attn_mode must be one of"),
        (["strided:x:1:4"], "bad case 'strided:x:1:4': n, batch, local_attn_ctx and summary_ctx are integers"),
        (["--heads=0", "strided:12:1:4"], "--heads and --warmup must be at least 1"),
        (["--warmup=0", "strided:12:1:4"], "--heads and --warmup must be at least 1"),
        (["--pass=bwd", "strided:12:1:4"], "invalid choice"),
    ],
)
def test_bad_arguments_fail_before_any_gpu_work(argv, text, capsys):
    with pytest.raises(SystemExit) as exit_info:
        hw_counters.main(argv)
    assert exit_info.value.code == 2
    assert text in capsys.readouterr().err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the GPU path is exercised by the device call")
def test_without_a_gpu_it_says_so(capsys):
    with pytest.raises(SystemExit):
        hw_counters.main(["strided:12:1:4"])
    assert "needs a CUDA GPU" in capsys.readouterr().err
