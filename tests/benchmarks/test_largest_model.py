"""The search for the largest model that fits (benchmarks/largest_model.py), with stand-in probes: the GPU
probe itself needs a GPU."""

import pytest

from benchmarks.largest_model import Probe, answer, main, most_layers


def linear_probe(base=1.0, per_layer=0.5, oom_above=None, log=None):
    def probe(layers):
        if log is not None:
            log.append(layers)
        if oom_above is not None and layers > oom_above:
            return Probe(layers, False, None, layers * 1000, None)
        return Probe(layers, True, base + per_layer * layers, layers * 1000, 1.0)

    return probe


def test_two_probes_predict_and_a_third_confirms():
    log = []
    probes = most_layers(linear_probe(log=log), budget_gib=20.0)
    assert log == [2, 4, 38]  # 3 GiB at 4 layers, 0.5 GiB per layer: 4 + 17 / 0.5
    assert answer(probes, 20.0).layers == 38


def test_a_prediction_that_does_not_fit_steps_down_by_a_tenth():
    log = []
    probes = most_layers(linear_probe(oom_above=30, log=log), budget_gib=20.0)
    assert log == [2, 4, 38, 35, 32, 29]
    assert answer(probes, 20.0).layers == 29


def test_nothing_fits_is_an_error():
    with pytest.raises(ValueError, match="do not fit"):
        most_layers(linear_probe(oom_above=1), budget_gib=20.0)
    with pytest.raises(ValueError, match="no probe fits"):
        answer([Probe(2, True, 30.0, 1, 1.0)], budget_gib=20.0)


def test_the_command_refuses_bad_input_and_a_missing_gpu(capsys):
    with pytest.raises(SystemExit):
        main(["--n", "1000"])
    assert "no row width known" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--widths", "100"])
    assert "multiple of 64" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            main(["--n", "65536"])
        assert "needs a CUDA GPU" in capsys.readouterr().err


def test_the_probe_trains_the_model_it_measures():
    """The GPU probe's code, run on the CPU (kernels under the interpreter), so a broken probe fails here and
    not in a device call."""
    from benchmarks.largest_model import gpu_probe

    result = gpu_probe(64, 8, 64, device="cpu")(2)
    assert result.fits and result.layers == 2 and result.params > 0 and result.ms_per_step > 0
