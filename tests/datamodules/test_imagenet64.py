"""ImageNet 64x64 from tiny PNG folders and npz batches: token order, splits, variants, cache and bad data."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch

from datamodules import DataError, DataNotFoundError, ImageNet64DataModule, PartialDataError
from datamodules import imagenet64 as imagenet64_module
from tests.datamodules.formats import image_pixels, make_npz_batches, make_png_folders, write_npz_batch, write_png


def make(tmp_path, **kwargs) -> ImageNet64DataModule:
    options = dict(data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), allow_partial=True, batch_size=5)
    return ImageNet64DataModule(**{**options, **kwargs})


def rows(dataset) -> torch.Tensor:
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def test_png_folders_token_order_splits_and_variant(tmp_path, caplog):
    train, valid = make_png_folders(tmp_path, n_train=50, n_valid=5)
    dm = make(tmp_path)
    assert (dm.benchmark, dm.seq_len, dm.token_axes) == ("imagenet64", 12_288, (64, 64, 3))
    with caplog.at_level(logging.WARNING):
        dm.prepare_data()
    assert dm.variant == "folder-50-5" and "48 training and 2 validation" in caplog.text
    dm.setup()
    tokens, score_from = next(iter(dm.test_dataloader()))
    assert tokens.shape == (5, 12_288) and tokens.dtype == torch.long and score_from.tolist() == [0] * 5
    # Raster order, R, G, B interleaved: token 3 * (64 * row + column) + channel is pixel (row, column)'s channel.
    assert tokens[0].tolist() == image_pixels(5_000, 64).reshape(-1).tolist()
    assert tokens[0, 3 * (64 * 2 + 5) + 1] == int(valid[0, 2, 5, 1])
    train_rows, val_rows = rows(dm.train_set), rows(dm.val_set)
    assert (len(train_rows), len(val_rows)) == (48, 2)
    everything = {tuple(r) for r in torch.cat([train_rows, val_rows]).tolist()}
    assert everything == {tuple(image.reshape(-1).tolist()) for image in train}  # disjoint and complete
    assert int(train_rows.min()) >= 0 and int(train_rows.max()) <= 255


def test_official_counts_and_determinism(tmp_path, monkeypatch):
    make_png_folders(tmp_path, n_train=30, n_valid=4)
    monkeypatch.setattr(imagenet64_module, "OFFICIAL_PNG_COUNTS", (30, 4))
    first = make(tmp_path, allow_partial=False, val_size=5, seed=3)
    first.setup()
    assert first.variant == "official" and len(first.val_set) == 5
    second = make(tmp_path, allow_partial=False, val_size=5, seed=3)
    second.setup()
    assert torch.equal(
        torch.cat([t for t, _ in first.train_dataloader()]), torch.cat([t for t, _ in second.train_dataloader()])
    )


def test_npz_batches_give_the_same_tokens_as_pngs(tmp_path):
    train, valid = make_npz_batches(tmp_path / "npz", per_batch=6, batches=2, n_valid=3)
    dm = make(tmp_path / "npz")
    dm.setup()
    assert dm.variant == "npz-12-3"
    assert rows(dm.test_set).tolist() == [image.reshape(-1).tolist() for image in valid]
    assert {tuple(r) for r in torch.cat([rows(dm.train_set), rows(dm.val_set)]).tolist()} == {
        tuple(image.reshape(-1).tolist()) for image in train
    }


def test_partial_refused(tmp_path):
    make_png_folders(tmp_path, n_train=5, n_valid=2)
    with pytest.raises(
        PartialDataError, match=r"5 train and 2 valid images, official 1,281,149 and 49,999.*folder-5-2"
    ):
        make(tmp_path, allow_partial=False).setup()


def test_missing_data_says_where_to_put_what(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"train_64x64.*valid_64x64.*npz.*image-net\.org"):
        make(tmp_path).setup()
    make_png_folders(tmp_path, n_train=3, n_valid=1)
    shutil.rmtree(tmp_path / "imagenet64" / "valid_64x64")
    with pytest.raises(DataNotFoundError, match=r"valid_64x64 is missing"):
        make(tmp_path).setup()
    with pytest.raises(ValueError, match="cannot be downloaded"):
        make(tmp_path, download=True)


@pytest.mark.parametrize(
    ("size", "mode", "message"),
    [
        ((32, 32), "RGB", r"bad\.png: a PNG image of 32x32 RGB, expected a 64x64 RGB PNG"),
        ((64, 64), "L", r"bad\.png: a PNG image of 64x64 L, expected a 64x64 RGB PNG"),
    ],
)
def test_png_of_wrong_size_or_mode_names_the_file(tmp_path, size, mode, message):
    make_png_folders(tmp_path, n_train=4, n_valid=2)
    write_png(tmp_path / "imagenet64" / "train_64x64" / "bad.png", image_pixels(0, size[0]), mode=mode)
    with pytest.raises(DataError, match=message):
        make(tmp_path).setup()
    assert list((tmp_path / "cache").iterdir()) == []


def test_truncated_png_fails_mid_conversion_and_leaves_no_cache(tmp_path):
    make_png_folders(tmp_path, n_train=6, n_valid=2)
    path = tmp_path / "imagenet64" / "train_64x64" / "00004.png"
    path.write_bytes(path.read_bytes()[:100])  # the header survives, the pixel data does not
    with pytest.raises(DataError, match=r"00004\.png: PNG data unreadable .*truncated"):
        make(tmp_path).setup()
    assert list((tmp_path / "cache").iterdir()) == []  # no half-written array, no temporary file


def test_npz_of_wrong_shape_or_garbage_names_the_file(tmp_path):
    make_npz_batches(tmp_path, per_batch=2, batches=1, n_valid=2)
    bad = tmp_path / "imagenet64" / "Imagenet64_val_npz" / "val_data.npz"
    np.savez(bad, data=np.zeros((2, 32 * 32 * 3), np.uint8), labels=np.ones(2))
    with pytest.raises(DataError, match=r"val_data\.npz: 'data' is uint8 \[2, 3072\], expected uint8 \[N, 12288\]"):
        make(tmp_path).setup()
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"val_data\.npz: not a readable npz batch"):
        make(tmp_path).setup()
    write_npz_batch(bad, np.stack([image_pixels(0, 64)]))
    np.savez(tmp_path / "imagenet64" / "Imagenet64_train_npz" / "train_data_batch_2.npz", images=np.zeros(1))
    with pytest.raises(
        DataError, match=r"train_data_batch_2\.npz: arrays \['images.npy'\], expected 'data' and 'labels'"
    ):
        make(tmp_path).setup()


def test_cache_is_reused_and_rebuilt_when_the_source_changes(tmp_path):
    make_png_folders(tmp_path, n_train=6, n_valid=2)
    make(tmp_path).prepare_data()
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(cached) == 2 and all(name.endswith(".npy") for name in cached)
    make(tmp_path).prepare_data()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == cached
    write_png(tmp_path / "imagenet64" / "train_64x64" / "00099.png", image_pixels(99, 64))
    dm = make(tmp_path)
    dm.setup()
    assert dm.variant == "folder-7-2" and len(list((tmp_path / "cache").iterdir())) == 4
