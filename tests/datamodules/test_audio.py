"""Audio from tiny WAV / FLAC / Ogg files: decoding, mono mix, resampling, mu-law, splits, cache and bad data."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.functional as audio_functional

from datamodules import AudioDataModule, DataError, DataNotFoundError, PartialDataError
from datamodules import audio as audio_module
from tests.datamodules.formats import tone, write_audio


def make(tmp_path, **kwargs) -> AudioDataModule:
    options = dict(
        data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), allow_partial=True, seq_len=512, row_width=32
    )
    return AudioDataModule(**{**options, **kwargs})


def cached(tmp_path) -> list:
    return sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())


def three_files(tmp_path) -> None:
    folder = tmp_path / "audio"
    left_minus_right = tone(1.0, 16_000, channels=2) * np.array([1.0, -1.0], np.float32)
    write_audio(folder / "a_stereo.wav", left_minus_right, 16_000, subtype="FLOAT")
    write_audio(folder / "b_mono.flac", tone(1.0, 12_000, frequency=300.0), 12_000)
    write_audio(folder / "c_stereo.OGG", tone(1.0, 44_100, channels=2, frequency=500.0), 44_100)
    (folder / "notes.txt").write_text("not audio")


def test_decode_mix_resample_and_mu_law(tmp_path):
    three_files(tmp_path)
    dm = make(tmp_path)
    assert (dm.benchmark, dm.seq_len, dm.token_axes) == ("audio", 512, (16, 32))
    dm.prepare_data()
    assert dm.variant == "excerpts-3"
    codes = [np.load(path) for path in dm._encode()]
    assert [len(c) for c in codes] == [12_000, 12_000, 12_000]  # 1 s each at 12 kHz
    assert all(c.dtype == np.uint8 for c in codes)
    assert set(codes[0].tolist()) == {128}  # left = -right: the mono mix is silence, mu-law code 128
    samples, _ = soundfile.read(str(tmp_path / "audio" / "b_mono.flac"), dtype="float32")
    expected = audio_functional.mu_law_encoding(torch.from_numpy(samples), 256).numpy()
    assert np.array_equal(codes[1], expected)  # already 12 kHz mono: exactly torchaudio's mu-law codes
    assert codes[2].min() < 64 and codes[2].max() > 192  # a loud tone spans the code range


def test_time_split_disjoint_windows_and_batches(tmp_path):
    three_files(tmp_path)
    dm = make(tmp_path, batch_size=4)
    dm.setup()
    assert dm.split_mode == "time"
    covered = {}
    for name, pieces in dm.split_pieces.items():
        for piece in pieces:
            covered.setdefault(piece.file, []).append((piece.start, piece.end, name))
    for spans in covered.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # no overlap
    assert sum(len(p) for pieces in dm.split_pieces.values() for p in pieces) == 36_000
    assert [sum(map(len, dm.split_pieces[n])) for n in ("train", "val", "test")] == [32_400, 1_800, 1_800]
    tokens, score_from = next(iter(dm.train_dataloader()))
    assert tokens.shape == (4, 512) and tokens.dtype == torch.long and score_from.tolist() == [0] * 4
    assert int(tokens.min()) >= 0 and int(tokens.max()) <= 255
    eval_scores = [s for _, score in dm.test_dataloader() for s in score.tolist()]
    assert eval_scores == [0, 0, 0, 512 - (1_800 - 3 * 512)]  # non-overlapping, then the tail


def test_file_split_holds_out_whole_files(tmp_path, monkeypatch):
    for i in range(5):
        write_audio(tmp_path / "audio" / f"piece_{i}.wav", tone(0.5, 12_000, frequency=200.0 + 50 * i), 12_000)
    monkeypatch.setattr(audio_module, "FILE_SPLIT_MIN_FILES", 5)
    dm = make(tmp_path)
    dm.setup()
    assert dm.split_mode == "files"
    files = {name: {piece.file for piece in pieces} for name, pieces in dm.split_pieces.items()}
    assert len(files["val"]) == 1 and len(files["test"]) == 1 and len(files["train"]) == 3
    assert not (files["train"] & files["val"] or files["train"] & files["test"] or files["val"] & files["test"])
    assert all(len(p) == 6_000 for pieces in dm.split_pieces.values() for p in pieces)  # whole files
    with pytest.raises(ValueError, match="at least 3 audio files"):
        audio_module.split_by_files([10, 10], split_seed=0)


def test_same_seed_same_batches(tmp_path):
    three_files(tmp_path)
    runs = []
    for seed in (1, 1, 2):
        dm = make(tmp_path, seed=seed, batch_size=8)
        dm.setup()
        runs.append(torch.cat([t for t, _ in dm.train_dataloader()]))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_cache_is_written_once(tmp_path, monkeypatch):
    three_files(tmp_path)
    make(tmp_path).prepare_data()
    files = cached(tmp_path)
    assert len(files) == 3 and all(name.endswith(".npy") for name in files)

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(audio_module, "encode_audio", no_decoding)
    make(tmp_path).setup()
    assert cached(tmp_path) == files


def test_undecodable_audio_names_the_file_and_caches_nothing(tmp_path):
    three_files(tmp_path)
    (tmp_path / "audio" / "broken.ogg").write_bytes(b"OggS but not really" * 10)
    with pytest.raises(DataError, match=r"broken\.ogg: undecodable audio \(LibsndfileError: .*WAV, FLAC or Ogg"):
        make(tmp_path).setup()
    assert cached(tmp_path) == []


def test_failed_write_leaves_no_half_written_cache(tmp_path, monkeypatch):
    three_files(tmp_path)

    def failing_save(file, array):
        file.write(b"\x93NUMPY half")
        raise OSError("No space left on device")

    monkeypatch.setattr(audio_module.np, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        make(tmp_path).prepare_data()
    assert cached(tmp_path) == []


def test_refusals_and_short_splits(tmp_path, caplog):
    with pytest.raises(DataNotFoundError, match=r"no audio found: expected WAV, FLAC or Ogg files in .*audio"):
        make(tmp_path).setup()
    three_files(tmp_path)
    with pytest.raises(PartialDataError, match=r"3 file\(s\) standing in .*allow_partial=True.*excerpts-3"):
        make(tmp_path, allow_partial=False).setup()
    with pytest.raises(DataError, match=r"the val split has 1,800 samples at 12000 Hz in 1 piece\(s\).*seq_len=2,048"):
        make(tmp_path, seq_len=2048).setup()
    with caplog.at_level(logging.WARNING):
        make(tmp_path, seq_len=512).setup()
    assert "excerpts-3" in caplog.text and "split by time: train 32,400 samples" in caplog.text
    with pytest.raises(ValueError, match="multiple of row_width"):
        AudioDataModule(seq_len=65_536, row_width=300)
    with pytest.raises(ValueError, match="not public"):
        AudioDataModule(download=True)


def test_eval_fraction_sizes_the_held_out_splits_and_zero_trains_only(tmp_path):
    """Longer sequences need longer evaluation splits (Table 4 at 262,144); 0 trains only (1,048,576)."""
    three_files(tmp_path)
    dm = make(tmp_path, batch_size=2, eval_fraction=0.15)
    dm.setup()
    assert [sum(map(len, dm.split_pieces[n])) for n in ("train", "val", "test")] == [25_200, 5_400, 5_400]
    train_only = make(tmp_path, batch_size=2, eval_fraction=0.0)
    train_only.setup()
    assert sum(map(len, train_only.split_pieces["train"])) == 36_000
    assert train_only.split_pieces["val"] == train_only.split_pieces["test"] == []
    tokens, _ = next(iter(train_only.train_dataloader()))
    assert tokens.shape == (2, 512)
    for loader in (train_only.val_dataloader, train_only.test_dataloader):
        with pytest.raises(DataError, match="eval_fraction=0"):
            loader()
    with pytest.raises(ValueError, match="eval_fraction"):
        make(tmp_path, eval_fraction=0.5)
