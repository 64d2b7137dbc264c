"""Cached sampling: the cached path's logits equal the full forward pass token by token, a step reads only
the pattern's allowed keys, and generate() keeps its contract."""

import pytest
import torch

from sparse.model import SparseTransformer, SparseTransformerConfig
from sparse.sampling import IncrementalDecoder, generate, incremental_logits

# Tiny models: one intra-op thread (tests/conftest.py's one_thread) for every test of this module.
pytestmark = pytest.mark.usefixtures("one_thread")


LAYOUTS = [
    ("all", "merged", {}),
    ("local", "merged", {}),
    ("strided", "merged", {}),
    ("strided", "interleaved", {"layer_pattern": "local,stride,stride"}),
    ("strided", "multihead", {"layer_pattern": "stride,local"}),
    ("fixed", "merged", {}),
    ("fixed", "merged", {"distinct_heads": True}),
    ("fixed", "interleaved", {"layer_pattern": "local,summary"}),
    ("fixed", "multihead", {"layer_pattern": "local,summary", "distinct_heads": True, "n_head": 4}),
]
LAYOUT_IDS = [f"{m}-{i}{'-distinct' if e.get('distinct_heads') else ''}" for m, i, e in LAYOUTS]


def small_model(dtype=torch.float64, **overrides) -> SparseTransformer:
    kwargs = dict(
        seq_len=36, token_axes=(6, 6), d_model=16, n_layer=3, n_head=2, ffn_multiple=2.0, qk_ratio=0.5,
        local_attn_ctx=6, summary_ctx=2, backend="reference", dropout=0.5,
    )  # fmt: skip
    kwargs.update(overrides)
    model = SparseTransformer(SparseTransformerConfig(**kwargs)).to(dtype)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=dtype) * 0.3)
    return model


@pytest.mark.parametrize("attn_mode,integration,extra", LAYOUTS, ids=LAYOUT_IDS)
def test_cached_logits_equal_the_full_forward_pass(attn_mode, integration, extra):
    model = small_model(attn_mode=attn_mode, integration=integration, **extra).train()
    tokens = torch.randint(0, 256, (2, 30), generator=torch.Generator().manual_seed(1))
    cached = incremental_logits(model, tokens)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        full = model(tokens)
    assert cached.dtype == torch.float64
    torch.testing.assert_close(cached, full, atol=1e-10, rtol=1e-10)


def test_cached_logits_equal_in_float32():
    model = small_model(dtype=torch.float32, attn_mode="fixed", distinct_heads=True).eval()
    tokens = torch.randint(0, 256, (2, 36))
    with torch.no_grad():
        torch.testing.assert_close(incremental_logits(model, tokens), model(tokens), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attn_mode,integration,extra", [LAYOUTS[2], LAYOUTS[4], LAYOUTS[8]])
def test_a_step_reads_only_the_allowed_keys(attn_mode, integration, extra):
    model = small_model(attn_mode=attn_mode, integration=integration, **extra).eval()
    config, n = model.config, 36
    decoder = IncrementalDecoder(model, batch=1, max_len=n)
    tokens = torch.randint(0, 256, (1, n))
    for t in range(n):
        decoder.step(None if t == 0 else tokens[:, t - 1])
    allowed = sum(
        g.pattern.allowed_count(n, g.num_heads) for layer in range(config.n_layer) for g in config.head_groups(layer)
    )
    assert decoder.keys_read == allowed < config.n_layer * config.n_head * n * (n + 1) // 2


def test_generate_shape_range_prefix_and_reproducibility():
    model = small_model(attn_mode="strided")
    prefix = torch.tensor([7, 8, 9])
    runs = [
        generate(model, 5, 20, prefix=prefix, progress=False, batch_size=2, generator=torch.Generator().manual_seed(3))
        for _ in range(2)
    ]
    samples = runs[0]
    assert samples.shape == (5, 20) and samples.dtype == torch.long
    assert samples.min() >= 0 and samples.max() <= 255
    assert torch.equal(samples[:, :3], prefix.expand(5, 3))
    assert torch.equal(runs[0], runs[1])
    assert len({tuple(row.tolist()) for row in samples}) > 1  # sampling, not a constant


def test_greedy_generation_follows_the_argmax_of_the_full_model():
    model = small_model(attn_mode="fixed").eval()
    samples = generate(model, 2, 12, temperature=0, progress=False)
    with torch.no_grad():
        logits = model(samples)
    assert torch.equal(logits.argmax(-1), samples)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(num_samples=0, length=4), ValueError, "num_samples"),
        (dict(num_samples=1, length=37), ValueError, "exceeds the model's context"),
        (dict(num_samples=1, length=4, temperature=-1.0), ValueError, "temperature"),
        (dict(num_samples=1, length=4, prefix=torch.tensor([300])), ValueError, "0..255"),
        (dict(num_samples=1, length=2, prefix=torch.tensor([1, 2, 3])), ValueError, "more than length"),
        (dict(num_samples=2, length=4, prefix=torch.zeros(3, 2, dtype=torch.long)), ValueError, "num_samples=2"),
        (dict(num_samples=1, length=4, prefix=torch.zeros(2)), TypeError, "integer"),
        (dict(num_samples=1, length=4, batch_size=0), ValueError, "batch_size"),
    ],
)
def test_generate_refuses_bad_arguments(kwargs, error, match):
    model = small_model(attn_mode="all")
    with pytest.raises(error, match=match):
        generate(model, progress=False, **kwargs)
    with pytest.raises(TypeError, match="SparseTransformer"):
        generate(torch.nn.Linear(2, 2), 1, 4)


@pytest.mark.cuda
def test_a_sampling_step_never_waits_for_the_gpu():
    """Each decoder step queues its work and returns: a device-to-host read (a count, a boolean-mask select,
    a blocking host-to-device copy) would stall the host on the GPU once per layer and step, which is what
    made sampling slow. torch's sync debug mode turns any such wait into an error."""
    model = small_model(dtype=torch.float32, attn_mode="fixed", integration="merged").cuda().eval()
    decoder = IncrementalDecoder(model, batch=2, max_len=model.config.seq_len)
    previous = None
    decoder.step(previous)  # the first step may allocate and warm up
    previous = torch.zeros(2, dtype=torch.long, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(8):
            logits = decoder.step(previous)
            previous = torch.multinomial(torch.softmax(logits, dim=-1), 1)[:, 0]
    finally:
        torch.cuda.set_sync_debug_mode("default")
