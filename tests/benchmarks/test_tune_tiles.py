"""tune_tiles rejects what it cannot search before any GPU work."""

import pytest

from benchmarks import tune_tiles


@pytest.mark.parametrize(
    "argv, text",
    [
        (["--cases", "strided:999"], "unknown"),
        (["--kinds", "nope"], "unknown"),
        (["--candidates", "128x64w4"], "are not BMxBN"),
    ],
)
def test_bad_arguments_stop_before_any_timing(argv, text, capsys):
    with pytest.raises(SystemExit):
        tune_tiles.main(argv)
    assert text in capsys.readouterr().err


def test_tiles_read_as_kernel_resources_labels_them():
    assert tune_tiles.parse_tiles("128x64w4s2") == (128, 64, 4, 2)
    assert tune_tiles.parse_tiles(" 128x64w8s2/128") == (128, 64, 8, 2, 128)
    with pytest.raises(ValueError):
        tune_tiles.parse_tiles("128x64w8")


def test_every_case_is_addressable_by_mode_and_n():
    for cases in tune_tiles.CASES.values():
        names = [f"{mode}:{n}" for mode, n, *_ in cases]
        assert len(names) == len(set(names))
