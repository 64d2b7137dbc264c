"""`launch(kernel, grid, *args, **options)`: `kernel[grid](*args, **options)` without Triton's per-call work.

Why: in Triton 3.6 `kernel[grid](...)` binds the arguments, calls a specializer once per argument, builds the
cache key, a launch-metadata dict and calls two (empty) hook chains before the driver launches anything: tens
of microseconds of host time per launch. A sparse attention forward + backward is six launches whose GPU work
at training lengths is 0.1-0.5 ms, so the host was the limit: on an H100 host `python -m
benchmarks.profile_kernels` measured 1.12 ms of host time against 0.11 ms of GPU time for strided n = 3,072,
and the paper-size Enwik8 step spent more host time in this op than in cuDNN's (benchmarks/KERNEL_NOTES.md).

How: the first call of each specialization goes through Triton (which compiles or loads the kernel) and the
CompiledKernel it returns is kept; later calls with the same key call that kernel's launcher directly. The key
holds everything Triton specializes a launch on, so a kept kernel is only reused where Triton would have
picked the same one: each tensor's dtype and 16-byte alignment, each tensor descriptor's dtype and block shape,
each int's value (divisibility by 16, equality to 1 and the int width follow from it), each float's type, the
constexprs and launch options (by name and value), the kernel and the device.

`launch_site(site, kernel, grid, args, options)` goes one step further for callers that can name their own
specialization (sparse/kernels/launch.py's launchers: the plan, the inputs' dtypes, strides and alignment, the head
count): after a site's first launch, the kept kernel and its constexpr values are looked up by the site alone, so the
per-argument key and the options (a callable, built only for that first launch) cost nothing per call.

Contract: `args` are the kernel's leading parameters in signature order (tensors, tensor descriptors, ints,
floats; the first a tensor); `options` hold every remaining parameter by name (the constexprs) plus Triton's
launch options (num_warps, num_stages). The direct path is skipped, and Triton's own path taken, under the
interpreter (TRITON_INTERPRET=1), for tensors off the GPU, and whenever a launch hook is installed (profilers
such as proton install one).

Tensor descriptors: Triton's CUDA launcher encodes each host tensor descriptor into a CUtensorMap at every launch
(triton/backends/nvidia/driver.py's make_tensordesc_arg). The band kernels pass four per launch, the same ones
call after call, so `keep_encoded_descriptors` (run at import) wraps that function with a bounded cache keyed on
everything the encoding reads (address, shape, strides, padding, and the compiled kernel's descriptor metadata by
identity). Its result holds no tensor, so the cache keeps no memory alive. The wrapper also makes sure the calling
thread has a CUDA context before any encoding (`_bind_context_to_this_thread`).
"""

from __future__ import annotations

import threading

import torch
import triton
from triton.tools.tensor_descriptor import TensorDescriptor

from sparse.kernels.plan import interpreting

DIRECT = True  # False: always Triton's own path (benchmarks/profile_kernels.py compares the two in one process)
KEEP_ENCODED = True  # False: Triton encodes every descriptor at every launch (profile_kernels' `encode-each-launch`)
_MAX_ENTRIES = 4096
_compiled: dict[tuple, object] = {}
_trailing_names: dict[tuple[int, int], tuple[str, ...]] = {}


def _spec(arg):
    """What Triton specializes a launch on, for one argument. Most arguments are ints: their type is tested first."""
    kind = type(arg)
    if kind is int or kind is bool or arg is None:
        return arg  # their value decides divisibility, == 1 and width
    if kind is float:
        return float  # floats are never specialized on their value
    if isinstance(arg, torch.Tensor):
        return arg.dtype, arg.data_ptr() % 16 == 0
    if isinstance(arg, TensorDescriptor):
        return TensorDescriptor, arg.base.dtype, tuple(arg.block_shape)  # what Triton's signature holds of one
    return arg


def _hooks_installed() -> bool:
    runtime = triton.knobs.runtime
    return bool(runtime.launch_enter_hook.calls or runtime.launch_exit_hook.calls)


def _direct_path(first_arg) -> bool:
    """Whether a launch may skip Triton's path (see the module docstring); benchmarks/host_overhead.py replaces it to
    time the direct path's Python on a machine without a GPU."""
    return DIRECT and not interpreting() and first_arg.is_cuda and not _hooks_installed()


def launch(kernel, grid: tuple[int, ...], *args, **options) -> None:
    if not _direct_path(args[0]):
        kernel[grid](*args, **options)
        return
    _launch_kept(kernel, grid, args, options)


def _launch_kept(kernel, grid: tuple[int, ...], args: tuple, options: dict):
    """The direct path of `launch`; returns the kept compiled kernel it launched."""
    device = torch.cuda.current_device()
    key = (id(kernel), device, tuple(options.items()), tuple(map(_spec, args)))
    compiled = _compiled.get(key)
    if compiled is None:
        compiled = kernel[grid](*args, **options)
        if hasattr(compiled, "result"):  # an asynchronous compile hands back a future
            compiled = compiled.result()
        if len(_compiled) >= _MAX_ENTRIES:
            _compiled.clear()
        _compiled[key] = compiled
        return compiled
    names = _trailing_names.get((id(kernel), len(args)))
    if names is None:
        names = tuple(kernel.arg_names[len(args) :])
        missing = [name for name in names if name not in options]
        if missing:
            raise TypeError(f"{getattr(kernel, '__name__', kernel)}: no value for parameter(s) {missing}")
        _trailing_names[(id(kernel), len(args))] = names
    # The same argument list JITFunction.run hands the launcher: every parameter in signature order (the
    # launcher skips the constexprs), after the grid, stream, function, metadata and the (absent) hooks.
    values = (*args, *(options[name] for name in names))
    grid_x, grid_y, grid_z = (*grid, 1, 1)[:3]
    stream = torch._C._cuda_getCurrentRawStream(device)  # what Triton's CUDA driver binds get_current_stream to
    compiled.run(grid_x, grid_y, grid_z, stream, compiled.function, compiled.packed_metadata, None, None, None, *values)
    return compiled


def launch_site(site: tuple, kernel, grid: tuple[int, ...], args: tuple, options) -> None:
    """`launch(kernel, grid, *args, **options())` for a call site that names its own specialization: `site` must
    determine the value of every argument that is not a tensor or descriptor, each tensor's dtype and 16-byte alignment,
    each descriptor's dtype and block shape, and every option. Once a site has launched, later calls with the same site
    reuse its kernel and its constexpr values without looking at the arguments or building the options (`options` is a
    zero-argument callable, called only then): per launch, the work `launch` does per argument (the specialization key)
    and the options' dict merges, most of a launcher's Python (benchmarks/KERNEL_NOTES.md, host rows)."""
    if not _direct_path(args[0]):
        kernel[grid](*args, **options())
        return
    device = torch.cuda.current_device()
    entry = _sites.get((device, site))
    if entry is None:
        named = options()
        compiled = _launch_kept(kernel, grid, args, named)
        if len(_sites) >= _MAX_ENTRIES:
            _sites.clear()
        _sites[(device, site)] = (compiled, tuple(named[name] for name in kernel.arg_names[len(args) :]))
        return
    compiled, trailing = entry
    grid_x, grid_y, grid_z = (*grid, 1, 1)[:3]
    stream = torch._C._cuda_getCurrentRawStream(device)
    compiled.run(grid_x, grid_y, grid_z, stream, compiled.function, compiled.packed_metadata, None, None, None, *args,
                 *trailing)  # fmt: skip


_sites: dict[tuple, tuple[object, tuple]] = {}


_on_clear: list = []  # what else holds launches of kept kernels (call_graphs.clear registers itself)


def clear_cache() -> None:
    """Forget the kept kernels, encoded descriptors and call graphs (tests; or after changing Triton's knobs)."""
    for forget in _on_clear:
        forget()
    _compiled.clear()
    _trailing_names.clear()
    _encoded.clear()
    _sites.clear()


_encoded: dict[tuple, tuple[object, list]] = {}
_thread_state = threading.local()


def _bind_context_to_this_thread() -> None:
    """Encoding a descriptor (cuTensorMapEncodeTiled, in Triton's fill_tma_descriptor) needs a CUDA context current on
    the calling thread, and Triton does not make one current before it (its launcher does, after). A thread whose first
    CUDA work is a direct launch with descriptors has none: the autograd engine's device thread, when the backward's
    kernels were compiled and kept on another thread, failed with "invalid device context" (benchmarks/host_breakdown.py
    on an H200). Any CUDA runtime call binds the device's primary context to its thread; a stream query is one that
    neither waits nor allocates. Once per thread."""
    if not getattr(_thread_state, "bound", False):
        torch.cuda.current_stream().query()
        _thread_state.bound = True


def _keeping_encoded(encode):
    """`encode` (make_tensordesc_arg's signature) with its results kept per descriptor and kernel metadata. Without
    metadata Triton passes the descriptor's tensor itself through, so those calls are not kept."""

    def make_tensordesc_arg(arg, metadata):
        if metadata is not None:
            _bind_context_to_this_thread()
        if metadata is None or not KEEP_ENCODED:
            return encode(arg, metadata)
        key = (arg.base.data_ptr(), tuple(arg.shape), tuple(arg.strides), arg.padding, id(metadata))
        hit = _encoded.get(key)
        if hit is not None and hit[0] is metadata:  # `is`: an id may be reused once a kernel is gone
            return hit[1]
        if len(_encoded) >= _MAX_ENTRIES:
            _encoded.clear()
        encoded = encode(arg, metadata)
        _encoded[key] = (metadata, encoded)
        return encoded

    make_tensordesc_arg.keeps_encoded = True
    return make_tensordesc_arg


def keep_encoded_descriptors() -> None:
    """Wrap Triton's per-launch descriptor encoding with a cache (see the module docstring); idempotent."""
    try:
        from triton.backends.nvidia import driver
    except ImportError:  # a Triton without the CUDA backend: nothing to wrap
        return
    if not getattr(driver.make_tensordesc_arg, "keeps_encoded", False):
        driver.make_tensordesc_arg = _keeping_encoded(driver.make_tensordesc_arg)


keep_encoded_descriptors()
