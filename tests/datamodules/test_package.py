"""The interface other packages build on: names, attributes before any I/O, and LightningCLI-ready signatures."""

from __future__ import annotations

import inspect

import lightning
import pytest
import torch
from jsonargparse import ArgumentParser
from lightning import LightningDataModule

from datamodules import DATAMODULES, AudioDataModule, CIFAR10DataModule, Enwik8DataModule, ImageNet64DataModule
from tests.datamodules.formats import image_pixels, make_png_folders, text_bytes

SHAPES = {
    "cifar10": (3072, (32, 32, 3)),
    "enwik8": (12_288, (96, 128)),
    "imagenet64": (12_288, (64, 64, 3)),
    "audio": (65_536, (256, 256)),
}


def test_registry_and_attributes_without_io(tmp_path):
    assert DATAMODULES == {
        "cifar10": CIFAR10DataModule,
        "enwik8": Enwik8DataModule,
        "imagenet64": ImageNet64DataModule,
        "audio": AudioDataModule,
    }
    for name, cls in DATAMODULES.items():
        dm = cls(data_dir=str(tmp_path / "nothing here"))
        assert isinstance(dm, LightningDataModule) and dm.benchmark == name
        assert (dm.seq_len, dm.token_axes) == SHAPES[name]
        with pytest.raises(RuntimeError, match="variant is known only after prepare_data"):
            _ = dm.variant
        with pytest.raises(RuntimeError, match="needs setup"):
            dm.val_dataloader()
    assert not (tmp_path / "nothing here").exists()
    assert Enwik8DataModule(seq_len=1024, row_width=64).token_axes == (16, 64)


@pytest.mark.parametrize("cls", list(DATAMODULES.values()), ids=list(DATAMODULES))
def test_signature_is_typed_documented_and_parsable(cls):
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    names = [p.name for p in parameters]
    assert names[:6] == ["data_dir", "batch_size", "num_workers", "seed", "download", "allow_partial"]
    assert all(p.annotation is not inspect.Parameter.empty for p in parameters)
    assert all(f"{name}:" in cls.__init__.__doc__ for name in names)
    parser = ArgumentParser()
    parser.add_class_arguments(cls, "data")
    config = parser.parse_args(["--data.data_dir=/somewhere", "--data.batch_size=3", "--data.allow_partial=true"])
    assert (config.data.data_dir, config.data.batch_size, config.data.allow_partial) == ("/somewhere", 3, True)
    assert "allow_partial" in parser.format_help()


class _Recorder(lightning.LightningModule):
    """Records the batches Lightning feeds it; a single parameter so that the optimizer has something to step."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen = {"train": [], "val": []}

    def training_step(self, batch, batch_index):
        tokens, score_from = batch
        self.seen["train"].append(tokens.clone())
        return (self.weight * tokens.float().mean()).sum()

    def validation_step(self, batch, batch_index):
        self.seen["val"].append(batch[0].clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_trainer_runs_epochs_with_new_windows_and_workers(tmp_path):
    (tmp_path / "enwik8").mkdir()
    (tmp_path / "enwik8" / "enwik8").write_bytes(text_bytes(20_000))
    dm = Enwik8DataModule(
        data_dir=str(tmp_path),
        allow_partial=True,
        seq_len=256,
        row_width=16,
        batch_size=2,
        num_workers=1,
        train_samples_per_epoch=4,
    )
    model = _Recorder()
    trainer = lightning.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
    )
    trainer.fit(model, datamodule=dm)
    assert dm.variant == "prefix-20000"
    first, second = torch.cat(model.seen["train"][:2]), torch.cat(model.seen["train"][2:])
    assert len(model.seen["train"]) == 4 and not torch.equal(first, second)  # set_epoch: new windows each epoch
    assert torch.equal(model.seen["val"][0], model.seen["val"][1])  # evaluation is the same every time


def test_imagenet_workers_share_the_memory_mapped_cache(tmp_path):
    make_png_folders(tmp_path, n_train=8, n_valid=2)
    dm = ImageNet64DataModule(
        data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), allow_partial=True, num_workers=2, batch_size=2
    )
    dm.setup()  # decodes the PNGs in 2 processes
    test = torch.cat([tokens for tokens, _ in dm.test_dataloader()])
    assert test.tolist() == [image_pixels(5_000 + i, 64).reshape(-1).tolist() for i in range(2)]
