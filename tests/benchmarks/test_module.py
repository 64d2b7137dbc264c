"""The LightningModule: a short CPU fit logs its metrics, score_from masks context, bits per dim sums
exactly, the schedule and the weight-decay groups are as documented, bad arguments are refused."""

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers.logger import Logger
from torch.utils.data import DataLoader, Dataset

from benchmarks.module import (
    BitsPerDim,
    SparseTransformerModule,
    WarmupCosine,
    batch_size,
    batch_tokens,
    throughput_monitor,
)

# Tiny models: one intra-op thread (tests/conftest.py's one_thread) for every test of this module.
pytestmark = pytest.mark.usefixtures("one_thread")


TINY = dict(
    seq_len=24, token_axes=(4, 6), d_model=16, n_layer=2, n_head=2, attn_mode="strided", local_attn_ctx=4,
    backend="reference",
)  # fmt: skip


class RandomWindows(Dataset):
    """(tokens [n], score_from) items, score_from cycling through 0, 5, 10."""

    def __init__(self, count: int, n: int = 24) -> None:
        gen = torch.Generator().manual_seed(0)
        self.tokens = torch.randint(0, 256, (count, n), generator=gen)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int):
        return self.tokens[index], torch.tensor(5 * (index % 3))


def loader(count: int) -> DataLoader:
    return DataLoader(RandomWindows(count), batch_size=2)


class MemoryLogger(Logger):
    """Keeps every logged metric in memory (the fit's logger=False would drop ThroughputMonitor's)."""

    name, version = "memory", 0

    def __init__(self) -> None:
        super().__init__()
        self.metrics: dict[str, float] = {}

    def log_metrics(self, metrics, step=None) -> None:
        self.metrics.update(metrics)

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


def test_short_fit_logs_losses_bits_per_dim_lr_and_throughput():
    module = SparseTransformerModule(**TINY, dropout=0.1, lr=1e-3, warmup_steps=2)
    logger = MemoryLogger()
    trainer = L.Trainer(
        accelerator="cpu", max_steps=3, logger=logger, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, log_every_n_steps=1, gradient_clip_val=1.0, num_sanity_val_steps=0,
        callbacks=[throughput_monitor(window_size=2)],
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=loader(6), val_dataloaders=loader(4))
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/bpd", "val/bpd", "lr"):
        assert key in metrics and math.isfinite(float(metrics[key])), key
    assert 7.0 < float(metrics["val/bpd"]) < 9.0  # near 8 after three small steps
    assert "perf/peak_gib" not in metrics  # CUDA only
    assert trainer.global_step == 3
    assert module.flops_per_batch == module.model.flops(2, 24, backward=module.training)
    logged = logger.metrics
    assert logged["train/device/items_per_sec"] > 0 and logged["train/device/flops_per_sec"] > 0
    assert "val/bpd" in logged and "train/bpd" in logged
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.last_epoch == 3
    assert scheduler.lr_lambdas[0].total_steps == 3  # the Trainer's horizon, since max_steps was None
    trainer.test(module, dataloaders=loader(4), verbose=False)
    assert math.isfinite(float(trainer.callback_metrics["test/bpd"]))


def test_positions_before_score_from_are_context_only():
    module = SparseTransformerModule(**TINY)
    torch.nn.init.normal_(module.model.logits.weight, std=1.0)
    tokens = torch.randint(0, 256, (3, 24))
    score_from = torch.tensor([0, 7, 24])
    nats, count = module.scored_nats((tokens, score_from))
    with torch.no_grad():
        per_token = F.cross_entropy(module.model(tokens).transpose(1, 2), tokens, reduction="none")
    expected = per_token[0].sum() + per_token[1, 7:].sum()
    assert count == 24 + 17
    torch.testing.assert_close(nats, expected)


def test_bits_per_dim_sums_nats_and_counts_not_batch_means():
    metric = BitsPerDim()
    metric.update(torch.tensor(10.0), torch.tensor(10))
    metric.update(torch.tensor(2.0), torch.tensor(1))
    assert metric.compute().item() == pytest.approx(12.0 / 11 / math.log(2))


def test_warmup_then_cosine_schedule():
    schedule = WarmupCosine(warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    assert [schedule(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert schedule(4) == pytest.approx(1.0)
    assert schedule(9) == pytest.approx(0.1 + 0.9 * 0.5)
    assert schedule(14) == pytest.approx(0.1) and schedule(100) == pytest.approx(0.1)


def test_scheduler_state_resumes():
    module = SparseTransformerModule(**TINY, max_steps=50, warmup_steps=10)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    for _ in range(12):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    resumed = SparseTransformerModule(**TINY, max_steps=50, warmup_steps=10).configure_optimizers()
    resumed["lr_scheduler"]["scheduler"].load_state_dict(state)
    assert resumed["lr_scheduler"]["scheduler"].get_last_lr() == scheduler.get_last_lr()


def test_weight_decay_on_matrices_only():
    module = SparseTransformerModule(**TINY, max_steps=10)
    decay, no_decay = module.parameter_groups()
    names = {id(p): n for n, p in module.model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert "embedding.token.weight" in decayed and "logits.weight" in decayed
    assert "blocks.0.attn.qkv.weight" in decayed and "embedding.axes.1.weight" in decayed
    assert all(p.ndim == 1 for p in no_decay["params"])
    assert "blocks.0.ln_attn.weight" in {names[id(p)] for p in no_decay["params"]}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(module.parameters()))


def test_throughput_functions_read_the_batch():
    batch = (torch.zeros(3, 24, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    assert batch_size(batch) == 3 and batch_tokens(batch) == 72


@pytest.mark.parametrize(
    "overrides,error,match",
    [
        (dict(token_axes=[4, 5]), ValueError, "product of token_axes"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(warmup_steps=-1), ValueError, "warmup_steps"),
        (dict(max_steps=0), ValueError, "max_steps"),
        (dict(betas=(0.9, 1.5)), ValueError, "betas"),
        (dict(backend="sdpa"), ValueError, "attn_mode 'all'"),
        (dict(compile_mode="fast"), ValueError, "compile_mode"),
    ],
)
def test_bad_arguments_are_refused(overrides, error, match):
    with pytest.raises(error, match=match):
        SparseTransformerModule(**{**TINY, **overrides})


def test_bad_batches_are_refused():
    module = SparseTransformerModule(**TINY)
    tokens = torch.zeros(2, 24, dtype=torch.long)
    with pytest.raises(TypeError, match="pair"):
        module.scored_nats(tokens)
    with pytest.raises(ValueError, match="score_from must be"):
        module.scored_nats((tokens, torch.zeros(3, dtype=torch.long)))
    with pytest.raises(ValueError, match="exceeds"):
        module.scored_nats((torch.zeros(2, 25, dtype=torch.long), torch.zeros(2, dtype=torch.long)))


def test_fit_resumes_exactly_from_a_lightning_checkpoint(tmp_path):
    """Two steps, save, two more steps from the checkpoint == four steps straight: model, AdamW state and
    the LambdaLR schedule come back. No dropout and a loader of one batch keep the data position and the
    RNG (the harness's concern) out of it."""

    def trainer(max_steps: int) -> L.Trainer:
        return L.Trainer(
            accelerator="cpu", max_steps=max_steps, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, gradient_clip_val=1.0,
        )  # fmt: skip

    def module() -> SparseTransformerModule:
        torch.manual_seed(0)
        return SparseTransformerModule(**TINY, lr=1e-2, warmup_steps=2, max_steps=4)

    straight = module()
    trainer(4).fit(straight, train_dataloaders=loader(2))
    first = module()
    t = trainer(2)
    t.fit(first, train_dataloaders=loader(2))
    t.save_checkpoint(tmp_path / "two.ckpt")
    resumed = module()
    trainer(4).fit(resumed, train_dataloaders=loader(2), ckpt_path=tmp_path / "two.ckpt")
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(b, a, atol=0, rtol=0, msg=name)


def test_a_compiled_model_gives_the_eager_loss_and_gradients(monkeypatch):
    """compile_mode compiles the model in place: same loss and gradients as eager, same state-dict keys (so
    checkpoints load either way). aot_eager stands in for inductor: the same graph capture, no C++ build."""
    from benchmarks import module as module_file

    monkeypatch.setattr(module_file, "COMPILE_BACKEND", "aot_eager")
    torch.manual_seed(0)
    eager = SparseTransformerModule(**TINY)
    compiled = SparseTransformerModule(**TINY, compile_mode="default")
    compiled.load_state_dict(eager.state_dict())
    assert list(compiled.state_dict()) == list(eager.state_dict())
    batch = next(iter(loader(2)))
    losses, grads = [], []
    for m in (eager, compiled):
        nats, count = m.scored_nats(batch)
        loss = nats / count
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in m.parameters()])
    torch.testing.assert_close(losses[1], losses[0])
    for got, want in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_backward_runs_with_the_chosen_thread_setting_and_leaves_none_behind():
    """backward_thread "caller" turns the engine's device threads off for the backward, and only inside it."""
    import torch

    from benchmarks.module import SparseTransformerModule

    with pytest.raises(ValueError, match="backward_thread"):
        SparseTransformerModule(seq_len=16, token_axes=(4, 4), backward_thread="gpu")

    seen = []

    class Probe(torch.autograd.Function):  # on a CPU the backward runs on the calling thread, which holds the flag
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            seen.append(torch._C._is_multithreading_enabled())
            return grad

    for thread, expected in (("caller", False), ("engine", True)):
        module = SparseTransformerModule(seq_len=16, token_axes=(4, 4), backend="reference", backward_thread=thread)
        x = torch.ones(3, requires_grad=True)
        module.backward(Probe.apply(x).sum())
        assert seen[-1] is expected and x.grad is not None
        assert torch._C._is_multithreading_enabled()  # the default again after the call


def test_training_end_says_how_often_call_graphs_replayed(monkeypatch):
    """On CUDA with the triton backend, the end of training reports the process's call-graph counts (stand-ins here:
    this machine has no GPU); on the CPU, or with another backend, it says nothing."""
    from sparse.kernels import call_graphs

    said = []
    monkeypatch.setattr("benchmarks.module.rank_zero_info", said.append)
    monkeypatch.setattr(
        call_graphs,
        "state",
        lambda: dict(enabled=True, disabled_reason=None, graphs=2, direct=3, captured=2, replayed=40),
    )
    module = SparseTransformerModule(**{**TINY, "backend": "triton", "d_model": 64})  # head width 32
    module.on_train_end()
    assert said == []  # on the CPU
    module._device = torch.device("cuda", 0)
    module.on_train_end()
    assert said == [
        "sparse attention call graphs: 40 calls replayed, 3 launched directly, 2 captured (this process so far)"
    ]
    reference = SparseTransformerModule(**TINY)
    reference._device = torch.device("cuda", 0)
    reference.on_train_end()
    assert len(said) == 1
