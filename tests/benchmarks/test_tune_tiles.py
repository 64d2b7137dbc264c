"""tune_tiles rejects what it cannot search before any GPU work."""

import pytest

from benchmarks import tune_tiles


@pytest.mark.parametrize("argv", [["--cases", "strided:999"], ["--kinds", "nope"]])
def test_bad_arguments_stop_before_any_timing(argv, capsys):
    with pytest.raises(SystemExit):
        tune_tiles.main(argv)
    assert "unknown" in capsys.readouterr().err


def test_every_case_is_addressable_by_mode_and_n():
    for cases in tune_tiles.CASES.values():
        names = [f"{mode}:{n}" for mode, n, *_ in cases]
        assert len(names) == len(set(names))
