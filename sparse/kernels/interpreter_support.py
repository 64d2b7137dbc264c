"""What the kernels use and Triton 3.6's CPU interpreter (TRITON_INTERPRET=1) lacks, so that the tests run the same
kernel code as the GPU: a TMA reduction into a tensor descriptor (`tensor_descriptor.atomic_add`, which
geometry.add_rows uses for plan.REDUCE_READ_BACK). `install()` adds it to the interpreter's builder where missing,
doing what the hardware does: each element of the box inside the tensor becomes round(old + value) in the tensor's
dtype (float inputs added in float32), boxes' rows past the tensor are dropped. It changes nothing on a GPU.
"""

from __future__ import annotations

import numpy as np


def _as_float32(data, dtype):
    """A loaded tensor's values as float32: bfloat16 arrives as its uint16 bit patterns (exactly the top half of a
    float32's)."""
    if dtype.name == "bf16":
        return (data.astype(np.uint32) << 16).view(np.float32)
    return data.astype(np.float32)


def _from_float32(values, dtype):
    """float32 values rounded to nearest-even in `dtype`, as the hardware's reduction rounds (bfloat16 by its bits: the
    interpreter's own float32 -> bfloat16 conversion truncates, and its round-to-nearest loses a carry into the
    exponent)."""
    if dtype.name == "bf16":
        bits = values.astype(np.float32).view(np.uint32)
        return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return values.astype(np.float16 if dtype.name == "fp16" else np.float32)


def _descriptor_reduce(self, kind, desc, value, indices):
    from triton._C.libtriton import ir
    from triton.runtime.interpreter import TensorHandle

    if kind != ir.DESCRIPTOR_REDUCE_KIND.ADD:
        raise NotImplementedError(f"the interpreter support adds only (got {kind})")
    ptrs, mask = desc.materialize_pointers(indices)
    dtype = ptrs.get_element_ty()
    if dtype.name not in ("bf16", "fp16", "fp32"):
        raise NotImplementedError(f"the interpreter support adds bf16, fp16 and fp32 tensors only (got {dtype})")
    current = self.create_masked_load(ptrs, mask, None, None, None, False)
    total = _as_float32(current.data, dtype) + _as_float32(value.data, value.dtype.scalar)
    self.create_masked_store(ptrs, TensorHandle(_from_float32(total, dtype), dtype), mask, None, None)


def install() -> None:
    try:
        from triton.runtime.interpreter import InterpreterBuilder
    except ImportError:  # no interpreter in this Triton: nothing to add to
        return
    if not hasattr(InterpreterBuilder, "create_descriptor_reduce"):
        InterpreterBuilder.create_descriptor_reduce = _descriptor_reduce
