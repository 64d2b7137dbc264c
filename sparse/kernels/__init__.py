"""Triton kernels for the factorized patterns (forward and backward). Filled in by the kernel work."""


def triton_sparse_attention(q, k, v, pattern, scale):  # pragma: no cover - replaced by the kernels
    raise NotImplementedError("backend 'triton' is not built yet; use 'reference' or 'flex'")
