"""The shared datasets, sampler and collate function (datamodules.sequences)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from datamodules.sequences import EpochSampler, EvalWindows, ImageRows, RandomWindows, collate_tokens, plan_eval_windows


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 64), st.data())
def test_eval_windows_score_every_position_once_with_min_context(seq_len, data):
    min_context = data.draw(st.integers(0, seq_len - 1))
    length = data.draw(st.integers(seq_len, 6 * seq_len))
    scored = np.zeros(length, dtype=int)
    for start, score_from in plan_eval_windows(length, seq_len, min_context):
        assert 0 <= start and start + seq_len <= length
        assert min_context <= score_from < seq_len
        scored[start + score_from : start + seq_len] += 1
    assert (scored[:min_context] == 0).all()
    assert (scored[min_context:] == 1).all()


def test_eval_windows_non_overlapping_by_default():
    assert plan_eval_windows(10, 4) == [(0, 0), (4, 0), (6, 2)]
    assert plan_eval_windows(8, 4) == [(0, 0), (4, 0)]
    assert plan_eval_windows(10, 4, min_context=2) == [(0, 2), (2, 2), (4, 2), (6, 2)]


def test_eval_windows_reject_short_piece_and_bad_context():
    with pytest.raises(ValueError, match="holds no window"):
        plan_eval_windows(3, 4)
    with pytest.raises(ValueError, match="min_context"):
        plan_eval_windows(10, 4, min_context=4)


def test_random_windows_stay_inside_pieces():
    pieces = [np.arange(10, dtype=np.uint8), np.arange(100, 103, dtype=np.uint8), np.arange(200, 206, dtype=np.uint8)]
    windows = RandomWindows(pieces, seq_len=4)
    assert len(windows) == 7 + 0 + 3
    got = [windows[i][0].tolist() for i in range(len(windows))]
    assert got[0] == [0, 1, 2, 3] and got[6] == [6, 7, 8, 9] and got[7] == [200, 201, 202, 203]
    assert all(w[0] // 100 == w[-1] // 100 and w == list(range(w[0], w[0] + 4)) for w in got)
    with pytest.raises(IndexError):
        windows[10]


def test_eval_windows_dataset_and_collate():
    dataset = EvalWindows([np.arange(10, dtype=np.uint8)], seq_len=4, min_context=1)
    tokens, score_from = collate_tokens([dataset[i] for i in range(len(dataset))])
    assert tokens.dtype == torch.long and score_from.dtype == torch.long
    assert tokens[:, 0].tolist() == [0, 3, 6] and score_from.tolist() == [1, 1, 1]


def test_image_rows_from_memory_and_npy(tmp_path):
    rows = np.arange(12, dtype=np.uint8).reshape(4, 3)
    np.save(tmp_path / "rows.npy", rows)
    for source in (rows, tmp_path / "rows.npy"):
        dataset = ImageRows(source, np.array([3, 1]))
        assert len(dataset) == 2
        assert dataset[0][0].tolist() == [9, 10, 11] and dataset[0][1] == 0


def test_epoch_sampler_is_a_function_of_seed_and_epoch():
    a, b = EpochSampler(50, seed=3), EpochSampler(50, seed=3)
    first = list(a)
    assert sorted(first) == list(range(50))
    assert first == list(b)
    assert list(a) != first  # the next pass is the next epoch
    b.set_epoch(1)
    a.set_epoch(1)
    assert list(a) == list(b)
    assert list(EpochSampler(50, seed=4)) != first
    draws = list(EpochSampler(7, seed=0, num_samples=30, replacement=True))
    assert len(draws) == 30 and all(0 <= d < 7 for d in draws)
    with pytest.raises(ValueError, match="empty"):
        EpochSampler(0, seed=0)
