"""CIFAR-10 from tiny python batches: token order, splits, variants, determinism and bad data."""

from __future__ import annotations

import hashlib
import logging
import tarfile

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10

from datamodules import CIFAR10DataModule, DataError, DataNotFoundError, PartialDataError
from tests.datamodules.formats import make_cifar, write_cifar_batch


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def official_md5s(monkeypatch):
    """Make torchvision's official MD5 table describe the tiny batches built by the test."""

    def bless(folder):
        monkeypatch.setattr(
            CIFAR10, "train_list", [[f"data_batch_{i}", md5(folder / f"data_batch_{i}")] for i in range(1, 6)]
        )
        monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])

    return bless


def all_batches(loader):
    return [batch for batch in loader]


def test_tokens_raster_order_rgb_interleaved(tmp_path):
    folder = make_cifar(tmp_path, per_batch=10, batches=1, test=4)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), allow_partial=True, batch_size=4)
    dm.setup()
    tokens, score_from = next(iter(dm.test_dataloader()))
    assert tokens.shape == (4, 3072) and tokens.dtype == torch.long
    assert score_from.tolist() == [0, 0, 0, 0]
    # Image 10000 of test_batch: pixel p channel k is (10000 * 31 + 3p(k + 1) + k) mod 256.
    expected = [(10_000 * 31 + 3 * p * (k + 1) + k) % 256 for p in range(1024) for k in range(3)]
    assert tokens[0].tolist() == expected
    assert tokens[0, :6].tolist() == expected[:6]  # R, G, B of pixel (0, 0), then of pixel (0, 1)
    assert folder.is_dir()


def test_official_split_sizes_disjoint_and_deterministic(tmp_path, official_md5s):
    folder = make_cifar(tmp_path, per_batch=10, batches=5, test=10)
    official_md5s(folder)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), train_size=40, val_size=8, batch_size=8, seed=1)
    dm.prepare_data()
    assert dm.variant == "official"
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (40, 8, 10)
    assert not set(dm.train_set.indices) & set(dm.val_set.indices)
    train = torch.cat([t for t, _ in all_batches(dm.train_dataloader())])
    val = torch.cat([t for t, _ in all_batches(dm.val_dataloader())])
    assert not {tuple(r) for r in train.tolist()} & {tuple(r) for r in val.tolist()}
    assert int(train.min()) >= 0 and int(train.max()) <= 255
    again = CIFAR10DataModule(data_dir=str(tmp_path), train_size=40, val_size=8, batch_size=8, seed=1)
    again.setup()
    assert torch.equal(train, torch.cat([t for t, _ in all_batches(again.train_dataloader())]))
    other = CIFAR10DataModule(data_dir=str(tmp_path), train_size=40, val_size=8, batch_size=8, seed=2)
    other.setup()
    other_train = torch.cat([t for t, _ in all_batches(other.train_dataloader())])
    assert not torch.equal(train, other_train)  # another order
    assert sorted(map(tuple, train.tolist())) == sorted(map(tuple, other_train.tolist()))  # the same images


def test_partial_refused_then_subset_with_proportional_split(tmp_path, caplog):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    write_cifar_batch(folder / "data_batch_1", 0, 100)
    write_cifar_batch(folder / "test_batch", 10_000, 20)
    with pytest.raises(PartialDataError, match=r"data_batch_1 has MD5 .*data_batch_2 missing.*allow_partial=True"):
        CIFAR10DataModule(data_dir=str(tmp_path)).prepare_data()
    dm = CIFAR10DataModule(data_dir=str(tmp_path), allow_partial=True)
    with caplog.at_level(logging.WARNING):
        dm.prepare_data()
    assert dm.variant == "subset-100-20"
    assert "subset-100-20" in caplog.text and "96 training and 4 validation" in caplog.text
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (96, 4, 20)


def test_variant_before_setup_raises_and_attributes(tmp_path):
    dm = CIFAR10DataModule(data_dir=str(tmp_path))
    assert (dm.benchmark, dm.seq_len, dm.token_axes) == ("cifar10", 3072, (32, 32, 3))
    with pytest.raises(RuntimeError, match="prepare_data"):
        _ = dm.variant
    with pytest.raises(ValueError, match="train_size"):
        CIFAR10DataModule(train_size=49_000, val_size=2_000)


def test_missing_without_download(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"cifar-10-batches-py.*download=True"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup()
    write_cifar_batch(tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_1", 0, 4)
    with pytest.raises(DataNotFoundError, match="test_batch missing"):
        CIFAR10DataModule(data_dir=str(tmp_path), allow_partial=True).setup()


def test_truncated_pickle_names_the_file(tmp_path):
    folder = make_cifar(tmp_path, per_batch=10, batches=1, test=4)
    batch = folder / "data_batch_1"
    batch.write_bytes(batch.read_bytes()[: batch.stat().st_size // 2])
    with pytest.raises(DataError, match=r"data_batch_1: not a readable CIFAR-10 python batch .*truncated"):
        CIFAR10DataModule(data_dir=str(tmp_path), allow_partial=True).setup()


def test_wrong_array_shape_names_the_file(tmp_path):
    folder = make_cifar(tmp_path, per_batch=4, batches=1, test=4)
    import pickle

    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((4, 1024), np.uint8), "labels": [0] * 4}, f)
    with pytest.raises(DataError, match=r"test_batch: 'data' is uint8 \[4, 1024\], expected uint8 \[N, 3072\]"):
        CIFAR10DataModule(data_dir=str(tmp_path), allow_partial=True).setup()


def test_download_through_torchvision_checks_md5(tmp_path, monkeypatch, official_md5s, serve):
    source = tmp_path / "source"
    folder = make_cifar(source, per_batch=10, batches=5, test=10)
    tarball = tmp_path / "web" / "cifar-10-python.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(folder, arcname="cifar-10-batches-py")
    official_md5s(folder)
    monkeypatch.setattr(CIFAR10, "url", f"{serve(tarball.parent)}/{tarball.name}")
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5(tarball))
    data = tmp_path / "data"
    dm = CIFAR10DataModule(data_dir=str(data), download=True, train_size=45, val_size=5)
    dm.prepare_data()
    assert dm.variant == "official"
    assert (data / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()
    monkeypatch.setattr(CIFAR10, "tgz_md5", "0" * 32)
    with pytest.raises(DataError, match=r"downloading CIFAR-10 from http://127.0.0.1:\d+/cifar-10-python.tar.gz"):
        CIFAR10DataModule(data_dir=str(tmp_path / "data2"), download=True).prepare_data()
    assert not (tmp_path / "data2" / "cifar10" / "cifar-10-python.tar.gz").exists()
