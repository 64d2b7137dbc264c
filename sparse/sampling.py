"""Sampling from a SparseTransformer with a key-value cache that reads only the pattern's allowed keys.

    samples = generate(model, num_samples=16, length=3072, temperature=1.0)   # int64 [16, 3072], 0..255

Contract:
- `generate` returns int64 tokens [num_samples, length] on the model's device, in 0..255, drawn one position
  at a time from softmax(logits / temperature) (temperature 0 = greedy argmax). `prefix` ([p] or
  [num_samples, p], p <= length) fixes the first p tokens: they are fed through the cache, not sampled.
- A step at position i computes the new position's q, k, v in every layer, stores k and v in the cache and
  attends only to `pattern.allowed_keys(i, head)` of each head group, so it costs what the pattern allows
  (l + i/l keys for strided, not i). The cache itself holds every position (a strided head needs keys all
  the way back): per layer keys [B, H, length, Dqk] and values [B, H, length, Dv].
- Queries and keys are cast to float32 (float64 stays float64) for the scores, as the paper did when
  sampling, to avoid fp16 overflow; values are stored in their projection dtype and promoted at use.
  Under torch.autocast the projections and FFN run in the autocast dtype.
- The model is put in eval mode (no dropout) for the duration and its mode is restored afterwards.
- `incremental_logits(model, tokens)` runs the same cached path teacher-forced and returns the logits of
  every step, [B, n, 256] float32 (float64 for a float64 model): they equal model(tokens) up to rounding,
  which the tests check for every attn_mode and integration.
Every argument is checked before any work: a bad one raises ValueError or TypeError naming it.
"""

from __future__ import annotations

import contextlib
import math

import torch
from tqdm.auto import tqdm

from sparse.model import VOCAB_SIZE, HeadGroup, SparseTransformer


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class IncrementalDecoder:
    """One sequence position per `step`, for `batch` sequences of at most `max_len` positions.

    `keys_read` counts the (query, key) pairs read so far, summed over layers, heads and steps, per
    sequence: after n steps it equals the patterns' allowed_count(n), which is what makes a step cheap."""

    def __init__(self, model: SparseTransformer, batch: int, max_len: int) -> None:
        if not isinstance(model, SparseTransformer):
            raise TypeError(f"model must be a sparse.SparseTransformer, got {type(model).__name__}")
        _check_positive_int("batch", batch)
        _check_positive_int("max_len", max_len)
        if max_len > model.config.seq_len:
            raise ValueError(f"max_len {max_len} exceeds the model's context seq_len={model.config.seq_len}")
        c = model.config
        weight = model.embedding.token.weight
        device, param_dtype = weight.device, weight.dtype
        self.model = model
        self.batch = batch
        self.max_len = max_len
        self.position = 0
        self.keys_read = 0
        self.score_dtype = torch.promote_types(param_dtype, torch.float32)
        value_dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else param_dtype
        self.keys = [
            torch.zeros(batch, c.n_head, max_len, c.qk_head_dim, dtype=self.score_dtype, device=device)
            for _ in range(c.n_layer)
        ]
        self.values = [
            torch.zeros(batch, c.n_head, max_len, c.head_dim, dtype=value_dtype, device=device)
            for _ in range(c.n_layer)
        ]
        self._device = device
        self._head_index: dict[tuple[int, int], torch.Tensor] = {}

    @torch.no_grad()
    def step(self, previous: torch.Tensor | None) -> torch.Tensor:
        """Feed the token at position - 1 (None at position 0) and return the logits [B, 256] of the
        current position (float32, or float64 for a float64 model); advances the position."""
        if self.position >= self.max_len:
            raise ValueError(f"the decoder is full: it was made for max_len={self.max_len} positions")
        if self.position == 0 and previous is not None:
            raise ValueError("position 0 takes no previous token (the start token is built in); pass None")
        if self.position > 0:
            if previous is None or previous.shape != (self.batch,):
                shape = None if previous is None else tuple(previous.shape)
                raise ValueError(f"previous must be a [batch={self.batch}] token tensor, got {shape}")
        model = self.model
        x = model.embedding.step(previous, self.position, self.batch)
        indices: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        for layer, block in enumerate(model.blocks):
            x = block(x, lambda q, k, v, layer=layer, block=block: self._attend(layer, block, indices, q, k, v))
        logits = model.logits(model.ln_f(x))[:, 0]
        self.position += 1
        return logits.to(self.score_dtype)

    def _attend(self, layer: int, block, indices: dict, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """q, k, v [B, H, 1, D] of the current position -> attention output [B, H, 1, Dv]."""
        i = self.position
        keys, values = self.keys[layer], self.values[layer]
        keys[:, :, i] = k[:, :, 0]
        values[:, :, i] = v[:, :, 0]
        outs = []
        for group in block.attn.groups:
            index, valid, count = self._allowed(group, i, indices)  # [Hg, M]
            heads = self._heads(group)
            k_sel = keys[:, heads, index]  # [B, Hg, M, Dqk]
            v_sel = values[:, heads, index].to(self.score_dtype)  # [B, Hg, M, Dv]
            q_g = q[:, group.start : group.stop, 0].to(self.score_dtype)  # [B, Hg, Dqk]
            scores = torch.einsum("bhd,bhmd->bhm", q_g, k_sel) * block.attn.scale
            scores = scores.masked_fill(~valid, float("-inf"))
            # A row with no allowed key (only possible for a part such as fixed's "summary" alone) gives
            # zeros, as the attention backends do, instead of the softmax's NaN.
            probs = torch.where(valid, torch.softmax(scores, dim=-1), 0.0)
            outs.append(torch.einsum("bhm,bhmd->bhd", probs, v_sel))
            self.keys_read += count  # counted on the host: int(valid.sum()) would wait for the GPU every layer
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        return out.unsqueeze(2).to(v.dtype)

    def _heads(self, group: HeadGroup) -> torch.Tensor:
        """[Hg, 1] head indices of a group, made once per decoder."""
        key = (group.start, group.stop)
        if key not in self._head_index:
            self._head_index[key] = torch.arange(group.start, group.stop, device=self._device).view(-1, 1)
        return self._head_index[key]

    def _allowed(self, group: HeadGroup, i: int, indices: dict) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The allowed key positions of every head of the group at query i, padded: index [Hg, M], valid
        [Hg, M] and how many are allowed. Layers with the same pattern share one computation per step.

        Built on the host and copied from pinned memory without blocking: computing them on the GPU (a
        boolean-mask select) or reading a count back would make the host wait for the GPU at every step, and
        a step is a few microseconds of GPU work behind a long queue of small launches."""
        key = (group.pattern, group.num_heads)
        if key not in indices:
            p = group.pattern
            if p.distinct_heads:
                rows = [p.allowed_keys(i, h) for h in range(group.num_heads)]
            else:
                rows = [p.allowed_keys(i, 0)] * group.num_heads
            width = max(len(r) for r in rows)
            index = torch.zeros(group.num_heads, width, dtype=torch.long)
            valid = torch.zeros(group.num_heads, width, dtype=torch.bool)
            for h, r in enumerate(rows):
                index[h, : len(r)] = r
                valid[h, : len(r)] = True
            if self._device.type == "cuda":
                index, valid = (t.pin_memory().to(self._device, non_blocking=True) for t in (index, valid))
            else:
                index, valid = index.to(self._device), valid.to(self._device)
            indices[key] = (index, valid, sum(len(r) for r in rows))
        return indices[key]


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _check_tokens(name: str, tokens: object) -> torch.Tensor:
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tokens).__name__}")
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {tokens.dtype}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= VOCAB_SIZE):
        raise ValueError(f"{name} values must be in 0..{VOCAB_SIZE - 1}")
    return tokens.long()


@torch.no_grad()
def incremental_logits(model: SparseTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """Teacher-forced logits of the cached path: tokens [B, n] -> [B, n, 256], equal to model(tokens)."""
    if not isinstance(model, SparseTransformer):
        raise TypeError(f"model must be a sparse.SparseTransformer, got {type(model).__name__}")
    tokens = _check_tokens("tokens", tokens)
    if tokens.dim() != 2 or tokens.shape[1] < 1:
        raise ValueError(f"tokens must be 2-D [batch, n] with n >= 1, got shape {tuple(tokens.shape)}")
    batch, n = tokens.shape
    with _eval_mode(model):
        decoder = IncrementalDecoder(model, batch, n)
        tokens = tokens.to(decoder._device)
        steps = [decoder.step(None if t == 0 else tokens[:, t - 1]) for t in range(n)]
    return torch.stack(steps, dim=1)


@torch.no_grad()
def generate(
    model: SparseTransformer,
    num_samples: int,
    length: int,
    temperature: float = 1.0,
    device: torch.device | str | None = None,
    prefix: torch.Tensor | None = None,
    progress: bool = True,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample `num_samples` sequences of `length` tokens -> int64 [num_samples, length] on the model's device.

    Args:
        model: the SparseTransformer (any backend: sampling does not use the attention backends).
        num_samples: how many sequences.
        length: tokens per sequence, 1..seq_len.
        temperature: logits are divided by it; 0 means greedy (argmax). The paper's samples use 1.0.
        device: where to sample; the model is moved there (in place) when given.
        prefix: int tokens [p] (shared) or [num_samples, p] fixing the first p <= length tokens.
        progress: show a tqdm bar over positions.
        batch_size: sequences decoded together (default: all); the cache holds
            2 * n_layer * batch_size * length * d_model numbers.
        generator: a torch.Generator on the sampling device, for reproducible samples.
    """
    if not isinstance(model, SparseTransformer):
        raise TypeError(f"model must be a sparse.SparseTransformer, got {type(model).__name__}")
    _check_positive_int("num_samples", num_samples)
    _check_positive_int("length", length)
    if length > model.config.seq_len:
        raise ValueError(f"length {length} exceeds the model's context seq_len={model.config.seq_len}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    batch_size = num_samples if batch_size is None else _check_positive_int("batch_size", batch_size)
    if prefix is not None:
        prefix = _check_tokens("prefix", prefix)
        if prefix.dim() == 1:
            prefix = prefix.unsqueeze(0).expand(num_samples, -1)
        if prefix.dim() != 2 or prefix.shape[0] != num_samples:
            raise ValueError(f"prefix must be [p] or [num_samples={num_samples}, p], got shape {tuple(prefix.shape)}")
        if prefix.shape[1] > length:
            raise ValueError(f"prefix has {prefix.shape[1]} tokens, more than length={length}")
    if device is not None:
        model.to(device)
    sample_device = model.embedding.token.weight.device
    out = torch.empty(num_samples, length, dtype=torch.long, device=sample_device)
    fixed = 0 if prefix is None else prefix.shape[1]
    if prefix is not None:
        out[:, :fixed] = prefix.to(sample_device)
    chunks = range(0, num_samples, batch_size)
    with _eval_mode(model), tqdm(total=len(chunks) * length, desc="sampling", unit="tok", disable=not progress) as bar:
        for first in chunks:
            rows = slice(first, min(first + batch_size, num_samples))
            decoder = IncrementalDecoder(model, rows.stop - rows.start, length)
            for t in range(length):
                logits = decoder.step(None if t == 0 else out[rows, t - 1])
                if t >= fixed:
                    out[rows, t] = _draw(logits, temperature, generator)
                bar.update(1)
    return out


def _draw(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]
