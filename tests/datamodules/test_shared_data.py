"""The real parts in ../shared/data (see its README): each loads with allow_partial=True under its variant, and is
refused without it. Skipped where the folder is absent; the caches go to tmp_path (the folder is read-only)."""

from __future__ import annotations

import pytest
import torch

from datamodules import (
    AudioDataModule,
    CIFAR10DataModule,
    DataError,
    Enwik8DataModule,
    ImageNet64DataModule,
    PartialDataError,
)
from tests.datamodules.formats import SHARED_DATA

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} not present")

CASES = [
    (CIFAR10DataModule, {}, "subset-4000-1000", (3840, 160, 1000)),
    (Enwik8DataModule, {}, "prefix-4154399", None),
    (ImageNet64DataModule, {"cache": True}, "proxy-900-100", (864, 36, 100)),
    (AudioDataModule, {"cache": True}, "excerpts-3", None),
]


@pytest.mark.parametrize(("cls", "options", "variant", "sizes"), CASES, ids=[case[0].benchmark for case in CASES])
def test_shared_part_loads_under_its_variant(tmp_path, cls, options, variant, sizes):
    kwargs = {"cache_dir": str(tmp_path)} if options.get("cache") else {}
    with pytest.raises(PartialDataError, match="allow_partial=True"):
        cls(data_dir=str(SHARED_DATA), **kwargs).prepare_data()
    dm = cls(data_dir=str(SHARED_DATA), allow_partial=True, batch_size=2, **kwargs)
    dm.prepare_data()
    assert dm.variant == variant
    dm.setup()
    if sizes is not None:
        assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == sizes
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        tokens, score_from = next(iter(loader))
        assert tokens.shape == (2, dm.seq_len) and tokens.dtype == torch.long and score_from.shape == (2,)
        assert 0 <= int(tokens.min()) and int(tokens.max()) <= 255
    if cls is AudioDataModule:  # the paper's shortest length fits the 5% splits, the next one does not
        assert dm.split_mode == "time" and len(dm.val_set) >= 1
        with pytest.raises(DataError, match=r"the val split has .* no piece holds seq_len=262,144"):
            cls(data_dir=str(SHARED_DATA), allow_partial=True, seq_len=262_144, **kwargs).setup()
