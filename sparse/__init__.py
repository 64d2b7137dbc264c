"""sparse: the paper's factorized attention patterns, their kernels, and the Sparse Transformer model.

    import sparse
    p = sparse.pattern("strided", local_attn_ctx=128)
    o = sparse.attention(q, k, v, p, backend="triton")      # q, k, v: [B, H, n, D]

No Lightning here: this package is usable on its own.
"""

from sparse.attention import BACKENDS, SparseAttention, attention
from sparse.model import SparseTransformer, SparseTransformerConfig
from sparse.patterns import ATTN_MODES, Pattern, pattern
from sparse.sampling import generate

__all__ = [
    "ATTN_MODES",
    "BACKENDS",
    "Pattern",
    "SparseAttention",
    "SparseTransformer",
    "SparseTransformerConfig",
    "attention",
    "generate",
    "pattern",
]
