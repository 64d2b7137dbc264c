"""Enwik8 from a tiny raw file and zip: splits, windows, minimum context, variants, download and bad data."""

from __future__ import annotations

import hashlib
import logging
import zipfile

import pytest
import torch

from datamodules import DataError, DataNotFoundError, Enwik8DataModule, PartialDataError
from datamodules import enwik8 as enwik8_module
from tests.datamodules.formats import text_bytes, write_zip

LENGTH = 20_000


@pytest.fixture
def official(monkeypatch):
    """Declare `content` the official enwik8 for the duration of a test."""

    def bless(content: bytes):
        monkeypatch.setattr(enwik8_module, "ENWIK8_MD5", hashlib.md5(content).hexdigest())
        monkeypatch.setattr(enwik8_module, "ENWIK8_BYTES", len(content))

    return bless


def make(tmp_path, **kwargs) -> Enwik8DataModule:
    options = dict(data_dir=str(tmp_path), seq_len=256, row_width=16, batch_size=4, allow_partial=True)
    return Enwik8DataModule(**{**options, **kwargs})


def test_raw_file_split_windows_and_tokens(tmp_path, official):
    content = text_bytes(LENGTH)
    (tmp_path / "enwik8").mkdir()
    (tmp_path / "enwik8" / "enwik8").write_bytes(content)
    official(content)
    dm = make(tmp_path, allow_partial=False)
    assert (dm.seq_len, dm.token_axes) == (256, (16, 16))
    dm.prepare_data()
    assert dm.variant == "official"
    dm.setup()
    tokens, score_from = next(iter(dm.train_dataloader()))
    assert tokens.shape == (4, 256) and tokens.dtype == torch.long and score_from.tolist() == [0] * 4
    train_part = content[:18_000]
    for row in tokens:  # every training window is a contiguous piece of the first 90%
        assert bytes(row.tolist()) in train_part
    assert len(dm.train_dataloader().sampler) == 18_000 // 256
    val = [bytes(t[:].tolist()) for batch, _ in dm.val_dataloader() for t in batch]
    assert all(window in content[18_000:19_000] for window in val)
    test = [bytes(t.tolist()) for batch, _ in dm.test_dataloader() for t in batch]
    assert all(window in content[19_000:] for window in test)


def test_eval_min_context_scores_each_byte_once(tmp_path):
    content = text_bytes(LENGTH)
    (tmp_path / "enwik8").mkdir()
    (tmp_path / "enwik8" / "enwik8").write_bytes(content)
    dm = make(tmp_path, eval_min_context=200)
    dm.setup()
    test_split = content[19_000:]
    scored = [0] * len(test_split)
    for tokens, score_from in dm.test_dataloader():
        for row, first in zip(tokens.tolist(), score_from.tolist()):
            assert first >= 200
            start = test_split.find(bytes(row))
            for position in range(start + first, start + 256):
                scored[position] += 1
    assert scored[:200] == [0] * 200 and scored[200:] == [1] * 800
    with pytest.raises(ValueError, match="eval_min_context"):
        make(tmp_path, eval_min_context=256)


def test_zip_read_and_same_seed_same_batches(tmp_path):
    content = text_bytes(LENGTH)
    write_zip(tmp_path / "enwik8" / "enwik8.zip", "enwik8", content, compression=zipfile.ZIP_DEFLATED)
    batches = []
    for seed in (5, 5, 6):
        dm = make(tmp_path, seed=seed)
        dm.setup()
        assert dm.variant == f"prefix-{LENGTH}"
        batches.append(torch.cat([t for t, _ in dm.train_dataloader()]))
    assert torch.equal(batches[0], batches[1]) and not torch.equal(batches[0], batches[2])


def test_partial_refused_then_prefix_variant_with_warning(tmp_path, caplog):
    (tmp_path / "enwik8").mkdir()
    (tmp_path / "enwik8" / "enwik8").write_bytes(text_bytes(LENGTH))
    with pytest.raises(PartialDataError, match=r"enwik8 is not the official data: 20,000 bytes .*prefix-20000"):
        make(tmp_path, allow_partial=False).setup()
    dm = make(tmp_path)
    with caplog.at_level(logging.WARNING):
        dm.prepare_data()
    assert dm.variant == "prefix-20000" and "18,000 / 1,000 / 1,000 bytes" in caplog.text


def test_missing_without_download(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"enwik8\.zip.*download=True"):
        make(tmp_path).setup()


def test_zip_with_bad_crc_names_the_file(tmp_path):
    content = text_bytes(LENGTH)
    path = tmp_path / "enwik8" / "enwik8.zip"
    write_zip(path, "enwik8", content)
    raw = bytearray(path.read_bytes())
    offset = raw.find(content[:64])
    raw[offset + 1000] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"enwik8\.zip: not a readable enwik8 zip \(BadZipFile: Bad CRC-32"):
        make(tmp_path).setup()


def test_bad_zip_members_and_garbage(tmp_path):
    path = tmp_path / "enwik8" / "enwik8.zip"
    write_zip(path, "other.txt", b"x")
    with pytest.raises(DataError, match=r"enwik8\.zip: no member 'enwik8'"):
        make(tmp_path).setup()
    path.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match=r"enwik8\.zip: not a readable enwik8 zip \(BadZipFile"):
        make(tmp_path).setup()


def test_split_shorter_than_seq_len_is_an_error(tmp_path):
    (tmp_path / "enwik8").mkdir()
    (tmp_path / "enwik8" / "enwik8").write_bytes(text_bytes(4_000))
    with pytest.raises(DataError, match=r"the val split has 200 bytes, fewer than seq_len=256"):
        make(tmp_path).setup()
    with pytest.raises(ValueError, match="multiple of row_width"):
        Enwik8DataModule(seq_len=1000, row_width=128)


def test_download_checks_md5_and_keeps_nothing_bad(tmp_path, monkeypatch, official, serve):
    content = text_bytes(LENGTH)
    web = tmp_path / "web"
    write_zip(web / "enwik8.zip", "enwik8", content, compression=zipfile.ZIP_DEFLATED)
    monkeypatch.setattr(enwik8_module, "ENWIK8_URL", f"{serve(web)}/enwik8.zip")
    data = tmp_path / "data"
    with pytest.raises(DataError, match=r"downloaded http://.*enwik8\.zip: member 'enwik8' has 20,000 bytes"):
        make(data, download=True).prepare_data()
    assert list((data / "enwik8").iterdir()) == []  # neither the zip nor a temporary file
    official(content)
    dm = make(data, download=True, allow_partial=False)
    dm.prepare_data()
    assert (
        dm.variant == "official" and (data / "enwik8" / "enwik8.zip").read_bytes() == (web / "enwik8.zip").read_bytes()
    )
