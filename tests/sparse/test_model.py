"""The Sparse Transformer model: backends agree, checkpointing is exact, init follows the formulas, a fresh
model scores 8 bits per dim, a tiny model overfits, FLOPs are exact, bad input is refused up front."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from sparse.model import SparseTransformer, SparseTransformerConfig

# Every backend the model is checked on; "reference" is the yardstick (triton runs under the CPU interpreter).
BACKENDS = ["reference", "flex", "sdpa", "triton"]


# Tiny models: one intra-op thread (tests/conftest.py's one_thread) for every test of this module.
pytestmark = pytest.mark.usefixtures("one_thread")


# (attn_mode, integration, extra config): every pattern and every way of combining factorized heads.
LAYOUTS = [
    ("all", "merged", {}),
    ("local", "merged", {}),
    ("strided", "merged", {}),
    ("strided", "interleaved", {"layer_pattern": "local,stride"}),
    ("strided", "multihead", {"layer_pattern": "local,stride"}),
    ("fixed", "merged", {"distinct_heads": True}),
    ("fixed", "interleaved", {"layer_pattern": "local,summary"}),
    ("fixed", "multihead", {"layer_pattern": "summary,local"}),
]
LAYOUT_IDS = [f"{m}-{i}" for m, i, _ in LAYOUTS]


def tiny_config(**overrides) -> SparseTransformerConfig:
    # head width 32 (d_model 64 / 2 heads) so that the triton backend's head widths are met.
    kwargs = dict(
        seq_len=48, token_axes=(6, 8), d_model=64, n_layer=2, n_head=2, ffn_multiple=2.0,
        local_attn_ctx=8, summary_ctx=4, backend="reference",
    )  # fmt: skip
    kwargs.update(overrides)
    return SparseTransformerConfig(**kwargs)


def randomised(model: SparseTransformer, seed: int = 0) -> SparseTransformer:
    """Non-trivial weights (the real init has zero logits, which would hide differences)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model


def supports_backward(backend: str, device: str) -> bool:
    return not (backend == "flex" and device == "cpu")


def valid_for(backend: str, attn_mode: str) -> bool:
    return backend != "sdpa" or attn_mode == "all"


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "reference"])
@pytest.mark.parametrize("attn_mode,integration,extra", LAYOUTS, ids=LAYOUT_IDS)
def test_backends_agree_forward_and_backward(backend, attn_mode, integration, extra, device):
    if not valid_for(backend, attn_mode):
        pytest.skip(f"{backend} is dense only")
    torch.manual_seed(0)
    configs = {
        name: tiny_config(attn_mode=attn_mode, integration=integration, backend=name, qk_ratio=0.5, **extra)
        for name in ("reference", backend)
    }
    ref = randomised(SparseTransformer(configs["reference"])).to(device)
    other = SparseTransformer(configs[backend]).to(device)
    other.load_state_dict(ref.state_dict())
    tokens = torch.randint(0, 256, (2, 40), device=device)
    backward = supports_backward(backend, device)
    with torch.set_grad_enabled(backward):
        outs = {}
        for name, model in (("reference", ref), (backend, other)):
            logits = model(tokens)
            outs[name] = logits
            if backward:
                F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    torch.testing.assert_close(outs[backend], outs["reference"], atol=2e-4, rtol=2e-4)
    if backward:
        for (name, p_ref), p_other in zip(ref.named_parameters(), other.parameters()):
            torch.testing.assert_close(p_other.grad, p_ref.grad, atol=2e-4, rtol=2e-3, msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("attn_mode,integration,extra", [LAYOUTS[0], LAYOUTS[3]], ids=[LAYOUT_IDS[0], LAYOUT_IDS[3]])
def test_checkpointing_gives_equal_gradients_with_dropout(backend, attn_mode, integration, extra, device):
    if not (valid_for(backend, attn_mode) and supports_backward(backend, device)):
        pytest.skip(f"{backend} has no backward here or is dense only")
    grads = {}
    for checkpoint in (False, True):
        config = tiny_config(
            attn_mode=attn_mode, integration=integration, dropout=0.3, embd_dropout=0.1, checkpoint=checkpoint,
            backend=backend, **extra,
        )  # fmt: skip
        model = randomised(SparseTransformer(config)).train().to(device)
        tokens = torch.randint(0, 256, (2, 48), generator=torch.Generator().manual_seed(1)).to(device)
        torch.manual_seed(123)
        logits = model(tokens)
        F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
        grads[checkpoint] = {n: p.grad.clone() for n, p in model.named_parameters()}
    for name, grad in grads[False].items():
        torch.testing.assert_close(grads[True][name], grad, atol=1e-6, rtol=1e-5, msg=name)
    # Dropout was live: a different seed gives different gradients.
    assert any(g.abs().sum() > 0 for g in grads[True].values())


def test_layouts_assign_patterns_to_layers_and_heads():
    interleaved = tiny_config(attn_mode="strided", integration="interleaved", layer_pattern="stride,local,local")
    assert [interleaved.head_groups(r)[0].pattern.part for r in range(4)] == ["stride", "local", "local", "stride"]
    multihead = tiny_config(attn_mode="fixed", integration="multihead", layer_pattern="local,summary", n_head=4)
    groups = multihead.head_groups(1)
    assert [(g.start, g.stop, g.pattern.part) for g in groups] == [(0, 2, "local"), (2, 4, "summary")]
    merged = tiny_config(attn_mode="fixed", distinct_heads=True).head_groups(0)
    assert len(merged) == 1 and merged[0].pattern.part == "merged" and merged[0].pattern.distinct_heads


def test_fresh_model_scores_eight_bits_per_dim():
    model = SparseTransformer(tiny_config(attn_mode="strided"))
    tokens = torch.randint(0, 256, (3, 48))
    logits = model(tokens)
    assert logits.shape == (3, 48, 256) and logits.dtype == torch.float32
    assert torch.count_nonzero(logits) == 0
    bpd = F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).item() / math.log(2)
    assert abs(bpd - 8.0) < 1e-5


def test_init_statistics_match_the_formulas():
    torch.manual_seed(0)
    d, layers, ffn = 512, 3, 2048
    config = SparseTransformerConfig(
        seq_len=1024, token_axes=(32, 16, 2), d_model=d, n_layer=layers, n_head=8, ffn_multiple=4.0,
        attn_mode="all", backend="reference",
    )  # fmt: skip
    model = SparseTransformer(config)
    block = model.blocks[1]
    expected = {
        "token embedding": (model.embedding.token.weight, 0.125 / math.sqrt(d)),
        "position rows": (model.embedding.axes[0].weight, 0.125 / math.sqrt(d * 3)),
        "position columns": (model.embedding.axes[1].weight, 0.125 / math.sqrt(d * 3)),
        "qkv": (block.attn.qkv.weight, math.sqrt(0.125 / d)),
        "attention output W_p": (block.attn.proj.weight, math.sqrt(0.125 / (2 * layers * d))),
        "W1": (block.ffn.fc.weight, math.sqrt(0.125 / d)),
        "W2": (block.ffn.proj.weight, math.sqrt(0.125 / (2 * layers * ffn))),
    }
    for name, (weight, std) in expected.items():
        assert abs(weight.mean().item()) < 0.05 * std, name
        assert weight.std().item() == pytest.approx(std, rel=0.03), name
    assert torch.count_nonzero(model.logits.weight) == 0 and model.logits.bias is None
    for linear in (block.attn.qkv, block.attn.proj, block.ffn.fc, block.ffn.proj):
        assert torch.count_nonzero(linear.bias) == 0
    assert torch.all(block.ln_attn.weight == 1) and torch.all(model.ln_f.bias == 0)


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    config = SparseTransformerConfig(
        seq_len=32, token_axes=(4, 8), d_model=32, n_layer=2, n_head=2, attn_mode="strided", local_attn_ctx=4,
        backend="reference",
    )  # fmt: skip
    model = SparseTransformer(config)
    tokens = torch.randint(0, 256, (4, 32))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = F.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() / math.log(2) < 2.0  # from 8 bits per dim at step 0


def test_position_embeddings_are_one_table_per_axis_summed():
    model = randomised(SparseTransformer(tiny_config(seq_len=24, token_axes=(2, 3, 4), attn_mode="all")))
    emb = model.embedding
    assert [t.num_embeddings for t in emb.axes] == [2, 3, 4]
    t = 17  # (row 1, column 1, channel 1)
    expected = emb.axes[0].weight[1] + emb.axes[1].weight[1] + emb.axes[2].weight[1]
    torch.testing.assert_close(emb.positions(torch.tensor(t)), expected)
    tokens = torch.randint(0, 256, (1, 24))
    inputs = emb(tokens)
    torch.testing.assert_close(inputs[0, 0], emb.token.weight[256] + emb.positions(torch.tensor(0)))
    torch.testing.assert_close(inputs[0, t], emb.token.weight[tokens[0, t - 1]] + expected)


@pytest.mark.parametrize("attn_mode,integration,extra", LAYOUTS, ids=LAYOUT_IDS)
def test_flops_count_matmuls_exactly_and_attention_by_allowed_elements(attn_mode, integration, extra):
    config = tiny_config(attn_mode=attn_mode, integration=integration, qk_ratio=0.5, **extra)
    model = SparseTransformer(config)
    batch, n = 2, 40
    dqk, dv = config.qk_head_dim, config.head_dim
    # The reference backend materialises all n x n scores, with q and k zero-padded to v's width:
    # FlopCounterMode sees that dense attention there.
    dense_attention = 2 * batch * config.n_head * n * n * (2 * config.kernel_head_dim) * config.n_layer
    parts = model.flops_breakdown(batch, n, backward=False)
    with FlopCounterMode(display=False) as counter:
        model(torch.randint(0, 256, (batch, n)))
    assert counter.get_total_flops() == parts["matmul"] + dense_attention
    allowed = sum(g.pattern.allowed_count(n, g.num_heads) for layer in range(2) for g in config.head_groups(layer))
    assert parts["attention"] == 2 * batch * allowed * (dqk + dv)
    full = model.flops_breakdown(batch, n, backward=True)
    assert full["matmul"] == 3 * parts["matmul"]
    assert model.flops(batch, n) == full["matmul"] + full["attention"]
    assert model.flops_per_token(n) == pytest.approx(model.flops(1, n) / n)


def test_attention_flops_match_pattern_flops_when_widths_are_equal():
    config = tiny_config(attn_mode="fixed", summary_ctx=2)
    model = SparseTransformer(config)
    pattern = config.head_groups(0)[0].pattern
    forward, backward = (pattern.flops(48, 3, config.n_head, config.head_dim, backward=b) for b in (False, True))
    assert model.flops_breakdown(3, backward=False)["attention"] == config.n_layer * forward
    assert model.flops_breakdown(3, backward=True)["attention"] == config.n_layer * (forward + backward)


def test_num_params_and_half_size_widths():
    config = tiny_config(attn_mode="all", ffn_multiple=2.0, qk_ratio=0.5)
    model = SparseTransformer(config)
    d, f, qk = 64, 128, 32
    per_block = (d * (2 * qk + d) + 2 * qk + d) + (d * d + d) + (d * f + f) + (f * d + d) + 4 * d
    embeddings = 257 * d + (6 + 8) * d
    assert model.num_params() == embeddings + 2 * per_block + 2 * d + 256 * d
    assert model.num_params(non_embedding=True) == model.num_params() - embeddings


def test_shorter_sequences_and_integer_dtypes_are_accepted():
    model = SparseTransformer(tiny_config(attn_mode="strided"))
    assert model(torch.randint(0, 256, (2, 5), dtype=torch.int32)).shape == (2, 5, 256)


BAD_CONFIGS = [
    (dict(token_axes=(6, 7)), ValueError, "product of token_axes"),
    (dict(d_model=60, n_head=8), ValueError, "divisible by n_head"),
    (dict(qk_ratio=0.3), ValueError, "qk_ratio"),
    (dict(attn_mode="dilated"), ValueError, "attn_mode must be one of"),
    (dict(integration="stacked"), ValueError, "integration must be one of"),
    (dict(backend="cuda"), ValueError, "backend must be one of"),
    (dict(backend="sdpa", attn_mode="strided"), ValueError, "valid only for attn_mode 'all'"),
    (dict(backend="triton", d_model=48, n_head=2), ValueError, "head widths"),
    (dict(attn_mode="all", integration="interleaved"), ValueError, "single part"),
    (dict(attn_mode="fixed", integration="interleaved", layer_pattern="local,stride"), ValueError, "'stride'"),
    (dict(attn_mode="strided", integration="multihead", layer_pattern="local,stride,merged"), ValueError, "n_head"),
    (dict(attn_mode="strided", distinct_heads=True), ValueError, "distinct_heads"),
    (dict(attn_mode="fixed", summary_ctx=16), ValueError, "summary_ctx"),
    (dict(dropout=1.0), ValueError, "dropout"),
    (dict(n_layer=0), ValueError, "n_layer"),
    (dict(seq_len=48.0), TypeError, "seq_len"),
    (dict(token_axes=48), TypeError, "token_axes"),
]


@pytest.mark.parametrize("overrides,error,match", BAD_CONFIGS, ids=[m for _, _, m in BAD_CONFIGS])
def test_bad_configs_are_refused(overrides, error, match):
    with pytest.raises(error, match=match):
        tiny_config(**overrides)


@pytest.mark.parametrize(
    "tokens,error,match",
    [
        (torch.full((1, 4), 256), ValueError, "0..255"),
        (torch.full((1, 4), -1), ValueError, "0..255"),
        (torch.zeros(1, 49, dtype=torch.long), ValueError, "exceeds the model's context"),
        (torch.zeros(1, 4), TypeError, "integer"),
        (torch.zeros(4, dtype=torch.long), ValueError, "2-D"),
        ([[1, 2]], TypeError, "torch.Tensor"),
    ],
    ids=["above-255", "negative", "too-long", "float", "1-D", "list"],
)
def test_bad_tokens_are_refused_before_any_work(tokens, error, match, monkeypatch):
    model = SparseTransformer(tiny_config(attn_mode="all"))
    monkeypatch.setattr(model.embedding, "forward", lambda *_: pytest.fail("work started"))
    with pytest.raises(error, match=match):
        model(tokens)
