"""The Sparse Transformer (paper sections 5.2-5.6 and 6): an autoregressive model over byte tokens.

    config = SparseTransformerConfig(seq_len=3072, token_axes=(32, 32, 3), attn_mode="strided",
                                     local_attn_ctx=96, n_layer=128, ffn_multiple=2.0, qk_ratio=0.5)
    model = SparseTransformer(config)
    logits = model(tokens)          # tokens [B, n'] int64 in 0..255, n' <= seq_len -> logits [B, n', 256]

Contract:
- Input: integer tokens [B, n'] with 1 <= n' <= seq_len and values in 0..255. They are shifted right inside
  the model behind a learned start token, so logits[:, t] is the prediction of tokens[:, t] from tokens[:, :t].
- Output: logits [B, n', 256] in float32 (or in the autocast dtype under autocast); bits per dim is the
  cross-entropy in nats divided by ln 2. A freshly initialised model has zero logits: exactly 8 bits per dim.
- Every argument is checked when the config is built, and tokens when they arrive, before any work.

Architecture (paper section 5.2, Eq. 15; PAPER.md section 6):
- input: token embedding (256 byte values plus one start-token row, index 256) plus one learned position
  table per axis of `token_axes`, summed: (row, column, channel) for images, (row, column) with the width
  equal to the stride for text and audio. The position added at input t is the position of the token that
  t predicts (t itself); [DA] adds the position of the previous token instead, which carries the same
  information shifted by one.
- pre-activation residual blocks: x += dropout(attn(LayerNorm(x))); x += dropout(ffn(LayerNorm(x))); dropout
  only at the end of each residual branch (and `embd_dropout` on the summed input embedding);
  final LayerNorm, then a bias-free logits projection.
- ffn(x) = W2 gelu(W1 x + b1) + b2 with width ffn_multiple * d (4 by default, 2 for "half-size"), where gelu
  is the paper's approximation x * sigmoid(1.702 x).
- attention: q, k of width qk_ratio * d (0.5 = the CIFAR model's half-size query-key projection), v of width
  d, heads of d / n_head; scale 1 / sqrt(query-key head width). When q/k and v head widths differ, the
  narrower ones are zero-padded to the wider one (exact: zeros add nothing to q.k), because the attention
  backends take q, k, v of one shape; this costs the kernel some extra work that `flops` does not count.
- integration of the factorized heads (paper section 4.3):
    merged:      every layer, every head attends the union A1 | A2 (Eq. 7);
    interleaved: layer r uses part layer_pattern[r % p] (Eq. 6); [DA]'s CIFAR-10 'bT,b,b,b' (one strided
                 layer, then three local ones) is "stride,local,local,local";
    multihead:   the heads of every layer are split into p equal contiguous groups, group g using part
                 layer_pattern[g] (Eq. 8).
  Parts are sparse.pattern's: strided has "local", "stride", "merged"; fixed has "local", "summary",
  "merged". attn_mode "all" and "local" have a single part and accept only integration "merged".
  With distinct_heads (fixed only, paper section 4.3) the head index a pattern sees is the index inside
  its group of heads.
- checkpoint=True recomputes each block (attention and FFN) in the backward pass and stores only block
  inputs (paper Fig. 4); dropout masks are replayed through torch.utils.checkpoint's preserved RNG state,
  so gradients equal those without checkpointing.

Initialisation (paper section 6; PAPER.md section 4). The paper writes N(0, 0.125/sqrt(d)) and does not say
whether the second argument is a standard deviation or a variance. Chosen here:
- weights of the q, k, v projections and W1: std sqrt(0.125 / d_in), as [DA]'s code;
- the attention output projection W_p and W2: std sqrt(0.125 / (2 N d_in)) for N layers (the paper's
  1/sqrt(2N) scaling, as [DA] implements it);
- token embedding (start token included): std 0.125 / sqrt(d); each position table: std
  0.125 / sqrt(d * n_axes). These read the paper's second argument as a std; they give 0.0078 and 0.0045 at
  d = 256 with three axes, close to [DA]'s CIFAR constants (0.01 and 0.01 / sqrt(3)), whereas reading them as
  sqrt(0.125 / d) would be about three times larger;
- biases zero, LayerNorm weight one, logits weight zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as checkpoint_block

from sparse.attention import BACKENDS, KERNEL_HEAD_DIMS, attention
from sparse.patterns import ATTN_MODES, FIXED_PARTS, STRIDED_PARTS, Pattern, pattern

VOCAB_SIZE = 256
START_TOKEN = VOCAB_SIZE  # the extra row of the token embedding
INTEGRATIONS = ("merged", "interleaved", "multihead")
GELU_SIGMOID_SCALE = 1.702
INIT_SCALE = 0.125

# Attention core used by Attention.forward: (q, k, v) [B, H, n, D] -> [B, H, n, Dv]. The sampler swaps it
# for one that reads a key-value cache.
Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class HeadGroup(NamedTuple):
    """Heads [start, stop) of one layer attend with `pattern`."""

    start: int
    stop: int
    pattern: Pattern

    @property
    def num_heads(self) -> int:
        return self.stop - self.start


@dataclass
class SparseTransformerConfig:
    seq_len: int  # n
    token_axes: tuple[int, ...]  # product == seq_len; (32, 32, 3) images; (n // width, width) text/audio
    d_model: int = 256
    n_layer: int = 2
    n_head: int = 2
    ffn_multiple: float = 4.0  # 2.0 = paper's "half-size"
    qk_ratio: float = 1.0  # 0.5 = paper's half-size query-key projection (CIFAR)
    dropout: float = 0.0  # residual dropout, at the end of each residual branch
    embd_dropout: float = 0.0
    attn_mode: str = "strided"  # all | local | strided | fixed
    integration: str = "merged"  # merged | interleaved | multihead
    layer_pattern: str = "local,stride"  # parts for interleaved (per layer) and multihead (per head group)
    local_attn_ctx: int = 128  # l
    summary_ctx: int = 32  # c
    distinct_heads: bool = False
    backend: str = "triton"
    checkpoint: bool = False  # activation checkpointing per block

    def __post_init__(self) -> None:
        for name in ("seq_len", "d_model", "n_layer", "n_head", "local_attn_ctx", "summary_ctx"):
            _check_positive_int(name, getattr(self, name))
        if isinstance(self.token_axes, (list, tuple)):
            self.token_axes = tuple(self.token_axes)
        else:
            raise TypeError(f"token_axes must be a tuple of ints, got {type(self.token_axes).__name__}")
        if not self.token_axes:
            raise ValueError("token_axes must name at least one axis")
        for size in self.token_axes:
            _check_positive_int("token_axes entries", size)
        if math.prod(self.token_axes) != self.seq_len:
            raise ValueError(
                f"the product of token_axes {self.token_axes} is {math.prod(self.token_axes)}, "
                f"but seq_len is {self.seq_len}; they must be equal"
            )
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        for name in ("ffn_multiple", "qk_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {type(value).__name__}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value}")
        if self.ffn_width < 1:
            raise ValueError(f"ffn_multiple {self.ffn_multiple} gives an FFN width < 1 at d_model {self.d_model}")
        qk_width = self.d_model * self.qk_ratio
        if qk_width != int(qk_width) or int(qk_width) % self.n_head:
            raise ValueError(
                f"d_model * qk_ratio ({self.d_model} * {self.qk_ratio} = {qk_width}) must be an integer "
                f"divisible by n_head ({self.n_head})"
            )
        for name in ("dropout", "embd_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {type(value).__name__}")
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        for name in ("distinct_heads", "checkpoint"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {type(getattr(self, name)).__name__}")
        if self.attn_mode not in ATTN_MODES:
            raise ValueError(f"attn_mode must be one of {ATTN_MODES}, got {self.attn_mode!r}")
        if self.integration not in INTEGRATIONS:
            raise ValueError(f"integration must be one of {INTEGRATIONS}, got {self.integration!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.backend == "sdpa" and self.attn_mode != "all":
            raise ValueError(
                f"backend 'sdpa' is dense causal attention, valid only for attn_mode 'all', got attn_mode "
                f"{self.attn_mode!r}; use backend 'triton', 'flex' or 'reference'"
            )
        if self.backend == "triton" and self.kernel_head_dim not in KERNEL_HEAD_DIMS:
            raise ValueError(
                f"backend 'triton' supports head widths {KERNEL_HEAD_DIMS}; d_model / n_head = {self.head_dim} and "
                f"the query-key head width is {self.qk_head_dim}, so the kernel would see {self.kernel_head_dim}"
            )
        if self.distinct_heads and self.attn_mode != "fixed":
            raise ValueError(f"distinct_heads applies to attn_mode 'fixed' only, got attn_mode {self.attn_mode!r}")
        if self.attn_mode in ("all", "local") and self.integration != "merged":
            raise ValueError(
                f"attn_mode {self.attn_mode!r} has a single part, so integration must be 'merged', "
                f"got {self.integration!r}"
            )
        if self.integration != "merged":
            valid = STRIDED_PARTS if self.attn_mode == "strided" else FIXED_PARTS
            parts = self.layer_parts
            for part in parts:
                if part not in valid:
                    raise ValueError(
                        f"layer_pattern {self.layer_pattern!r} has part {part!r}, which attn_mode "
                        f"{self.attn_mode!r} does not have; valid parts: {', '.join(valid)}"
                    )
            if self.integration == "multihead" and self.n_head % len(parts):
                raise ValueError(
                    f"integration 'multihead' splits the {self.n_head} heads into {len(parts)} equal groups "
                    f"(one per part of layer_pattern {self.layer_pattern!r}); n_head must be divisible by {len(parts)}"
                )
        # Building every distinct pattern validates l, c and distinct_heads against each other.
        distinct_layers = len(self.layer_parts) if self.integration == "interleaved" else 1
        for layer in range(min(self.n_layer, distinct_layers)):
            self.head_groups(layer)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def qk_width(self) -> int:
        return int(self.d_model * self.qk_ratio)

    @property
    def qk_head_dim(self) -> int:
        return self.qk_width // self.n_head

    @property
    def kernel_head_dim(self) -> int:
        """The head width the attention backend sees (q/k or v zero-padded to the wider one)."""
        return max(self.head_dim, self.qk_head_dim)

    @property
    def ffn_width(self) -> int:
        return int(round(self.d_model * self.ffn_multiple))

    @property
    def layer_parts(self) -> tuple[str, ...]:
        parts = tuple(p.strip() for p in str(self.layer_pattern).split(","))
        if not parts or any(not p for p in parts):
            raise ValueError(f"layer_pattern must be comma-separated part names, got {self.layer_pattern!r}")
        return parts

    def _pattern(self, part: str) -> Pattern:
        if self.attn_mode == "all":
            return pattern("all")
        summary = self.summary_ctx if self.attn_mode == "fixed" else None
        return pattern(self.attn_mode, self.local_attn_ctx, summary, part, self.distinct_heads)

    def head_groups(self, layer: int) -> tuple[HeadGroup, ...]:
        """Which heads of `layer` attend with which pattern."""
        if self.integration == "merged":
            return (HeadGroup(0, self.n_head, self._pattern("merged")),)
        parts = self.layer_parts
        if self.integration == "interleaved":
            return (HeadGroup(0, self.n_head, self._pattern(parts[layer % len(parts)])),)
        size = self.n_head // len(parts)
        return tuple(HeadGroup(g * size, (g + 1) * size, self._pattern(part)) for g, part in enumerate(parts))


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """The paper's GeLU approximation, x * sigmoid(1.702 x)."""
    return x * torch.sigmoid(GELU_SIGMOID_SCALE * x)


class InputEmbedding(nn.Module):
    """Start token + shifted byte tokens + one learned position table per axis of token_axes (Eq. 15)."""

    def __init__(self, config: SparseTransformerConfig) -> None:
        super().__init__()
        self.token = nn.Embedding(VOCAB_SIZE + 1, config.d_model)
        self.axes = nn.ModuleList(nn.Embedding(size, config.d_model) for size in config.token_axes)
        # coordinates[a, t]: position t's index along axis a (row-major: the last axis varies fastest).
        coords = torch.stack(torch.unravel_index(torch.arange(config.seq_len), config.token_axes))
        self.register_buffer("coordinates", coords, persistent=False)

    def positions(self, index: torch.Tensor | slice) -> torch.Tensor:
        """Summed position embeddings of positions `index` (a tensor of any shape, or a slice) -> [..., d]."""
        coords = self.coordinates[:, index]
        out = self.axes[0](coords[0])
        for axis, table in enumerate(self.axes[1:], start=1):
            out = out + table(coords[axis])
        return out

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, n = tokens.shape
        start = torch.full((batch, 1), START_TOKEN, dtype=torch.long, device=tokens.device)
        inputs = torch.cat([start, tokens[:, :-1].long()], dim=1)
        return self.token(inputs) + self.positions(torch.arange(n, device=tokens.device))

    def step(self, previous: torch.Tensor | None, position: int, batch: int) -> torch.Tensor:
        """The input at one position: previous [B] tokens (None at position 0) -> [B, 1, d]."""
        device = self.coordinates.device
        if previous is None:
            previous = torch.full((batch,), START_TOKEN, dtype=torch.long, device=device)
        # A slice, not torch.tensor([position], device=...): that host-to-device copy would wait for the GPU.
        return self.token(previous.long().view(batch, 1)) + self.positions(slice(position, position + 1))


class Attention(nn.Module):
    """q, k, v projections, sparse attention per head group, output projection W_p."""

    def __init__(self, config: SparseTransformerConfig, layer: int) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.head_dim
        self.qk_head_dim = config.qk_head_dim
        self.qk_width = config.qk_width
        self.backend = config.backend
        self.scale = 1.0 / math.sqrt(config.qk_head_dim)
        self.groups = config.head_groups(layer)
        self.qkv = nn.Linear(config.d_model, 2 * config.qk_width + config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)

    def project(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """h [B, n, d] -> q, k [B, H, n, Dqk] and v [B, H, n, Dv] (strided views, no copy)."""
        batch, n, _ = h.shape
        q, k, v = self.qkv(h).split([self.qk_width, self.qk_width, self.n_head * self.head_dim], dim=-1)
        q = q.view(batch, n, self.n_head, self.qk_head_dim).transpose(1, 2)
        k = k.view(batch, n, self.n_head, self.qk_head_dim).transpose(1, 2)
        v = v.view(batch, n, self.n_head, self.head_dim).transpose(1, 2)
        return q, k, v

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Sparse attention of every head group through the configured backend -> [B, H, n, Dv]."""
        width = max(self.qk_head_dim, self.head_dim)
        if self.qk_head_dim < width:
            q, k = F.pad(q, (0, width - self.qk_head_dim)), F.pad(k, (0, width - self.qk_head_dim))
        if self.head_dim < width:
            v = F.pad(v, (0, width - self.head_dim))
        outs = []
        for group in self.groups:
            heads = slice(group.start, group.stop)
            outs.append(attention(q[:, heads], k[:, heads], v[:, heads], group.pattern, self.backend, self.scale))
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        return out[..., : self.head_dim]

    def forward(self, h: torch.Tensor, attend: Attend | None = None) -> torch.Tensor:
        batch, n, d = h.shape
        out = (attend or self.attend)(*self.project(h))
        return self.proj(out.transpose(1, 2).reshape(batch, n, d))

    def extra_repr(self) -> str:
        groups = ", ".join(f"heads {g.start}..{g.stop - 1}: {g.pattern!r}" for g in self.groups)
        return f"backend={self.backend!r}, {groups}"


class FeedForward(nn.Module):
    def __init__(self, config: SparseTransformerConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.d_model, config.ffn_width)
        self.proj = nn.Linear(config.ffn_width, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(quick_gelu(self.fc(x)))


class Block(nn.Module):
    """Pre-activation residual block (paper section 5.2): dropout only at the end of each branch."""

    def __init__(self, config: SparseTransformerConfig, layer: int) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.d_model)
        self.attn = Attention(config, layer)
        self.ln_ffn = nn.LayerNorm(config.d_model)
        self.ffn = FeedForward(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, attend: Attend | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln_attn(x), attend))
        return x + self.drop(self.ffn(self.ln_ffn(x)))


class SparseTransformer(nn.Module):
    """The model; see the module docstring for the contract."""

    def __init__(self, config: SparseTransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, SparseTransformerConfig):
            raise TypeError(f"config must be a SparseTransformerConfig, got {type(config).__name__}")
        self.config = config
        self.embedding = InputEmbedding(config)
        self.embd_drop = nn.Dropout(config.embd_dropout)
        self.blocks = nn.ModuleList(Block(config, layer) for layer in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.logits = nn.Linear(config.d_model, VOCAB_SIZE, bias=False)
        self._flops_cache: dict[tuple[int, bool], tuple[int, int]] = {}
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The paper's initialisation (module docstring)."""
        c = self.config
        d, layers = c.d_model, c.n_layer
        nn.init.normal_(self.embedding.token.weight, std=INIT_SCALE / math.sqrt(d))
        for table in self.embedding.axes:
            nn.init.normal_(table.weight, std=INIT_SCALE / math.sqrt(d * len(c.token_axes)))
        for block in self.blocks:
            for norm in (block.ln_attn, block.ln_ffn):
                norm.reset_parameters()
            init = {
                block.attn.qkv: math.sqrt(INIT_SCALE / d),
                block.attn.proj: math.sqrt(INIT_SCALE / (2 * layers * d)),
                block.ffn.fc: math.sqrt(INIT_SCALE / d),
                block.ffn.proj: math.sqrt(INIT_SCALE / (2 * layers * c.ffn_width)),
            }
            for linear, std in init.items():
                nn.init.normal_(linear.weight, std=std)
                nn.init.zeros_(linear.bias)
        self.ln_f.reset_parameters()
        nn.init.zeros_(self.logits.weight)

    def check_tokens(self, tokens: torch.Tensor) -> None:
        """Raise TypeError/ValueError for tokens the model cannot take (reads two scalars from the device)."""
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
        if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
            raise TypeError(f"tokens must be an integer tensor (int64), got {tokens.dtype}")
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be 2-D [batch, n], got shape {tuple(tokens.shape)}")
        batch, n = tokens.shape
        if batch < 1 or n < 1:
            raise ValueError(f"tokens must be non-empty, got shape {tuple(tokens.shape)}")
        if n > self.config.seq_len:
            raise ValueError(f"sequence length {n} exceeds the model's context seq_len={self.config.seq_len}")
        low, high = torch.stack(torch.aminmax(tokens)).tolist()  # one device sync for both
        if low < 0 or high >= VOCAB_SIZE:
            raise ValueError(f"token values must be in 0..{VOCAB_SIZE - 1}, got values in {low}..{high}")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, n'] -> logits [B, n', 256]; logits[:, t] predicts tokens[:, t]."""
        self.check_tokens(tokens)
        x = self.embd_drop(self.embedding(tokens))
        use_checkpoint = self.config.checkpoint and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpoint_block(block, x, use_reentrant=False) if use_checkpoint else block(x)
        return self.logits(self.ln_f(x))

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count; non_embedding=True leaves out the token and position tables."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= sum(p.numel() for p in self.embedding.parameters())
        return total

    def flops_breakdown(self, batch: int, n: int | None = None, backward: bool = True) -> dict[str, int]:
        """Exact FLOPs of one pass over `batch` sequences of length n (default seq_len), split into
        "matmul" (projections, FFN, logits) and "attention" (q.k and p.v over the pattern's allowed
        elements only, summed over heads). A multiply-add counts 2. backward=True adds the backward pass:
        2x the forward for matmuls; for attention the five products of a flash-style backward (q.k
        recomputed, dV, dP, dQ, dK), i.e. 2.5x the forward when q/k and v have one width, as
        Pattern.flops counts. Elementwise work (LayerNorm, GeLU, softmax) and the recomputation of
        activation checkpointing are not counted (model FLOPs, as MFU uses)."""
        n = self.config.seq_len if n is None else n
        _check_positive_int("batch", batch)
        _check_positive_int("n", n)
        if n > self.config.seq_len:
            raise ValueError(f"n={n} exceeds the model's context seq_len={self.config.seq_len}")
        key = (n, backward)
        if key not in self._flops_cache:
            self._flops_cache[key] = self._flops_one_sequence(n, backward)
        matmul, attn = self._flops_cache[key]
        return {"matmul": batch * matmul, "attention": batch * attn}

    def flops(self, batch: int, n: int | None = None, backward: bool = True) -> int:
        """Exact FLOPs of one pass (forward, plus backward when `backward`); see flops_breakdown."""
        parts = self.flops_breakdown(batch, n, backward)
        return parts["matmul"] + parts["attention"]

    def flops_per_token(self, n: int | None = None, backward: bool = True) -> float:
        n = self.config.seq_len if n is None else n
        return self.flops(1, n, backward) / n

    def _flops_one_sequence(self, n: int, backward: bool) -> tuple[int, int]:
        c = self.config
        d, dqk, dv = c.d_model, c.qk_head_dim, c.head_dim
        per_layer = 2 * d * (2 * c.qk_width + d) + 2 * d * d + 4 * d * c.ffn_width
        matmul = n * (c.n_layer * per_layer + 2 * d * VOCAB_SIZE)
        allowed: dict[tuple[Pattern, int], int] = {}
        elements = 0
        for layer in range(c.n_layer):
            for group in c.head_groups(layer):
                key = (group.pattern, group.num_heads)
                if key not in allowed:
                    allowed[key] = group.pattern.allowed_count(n, group.num_heads)
                elements += allowed[key]
        attn = 2 * elements * (dqk + dv)
        if backward:
            matmul *= 3
            attn += 2 * elements * (3 * dqk + 2 * dv)
        return matmul, attn

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"attn_mode={c.attn_mode!r}, integration={c.integration!r}, backend={c.backend!r}, "
            f"seq_len={c.seq_len}, params={self.num_params():,}"
        )
