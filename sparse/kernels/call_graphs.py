"""`run(key, launches, like)`: a launcher's kernel launches, replayed from a CUDA graph once the same call repeats.

Why: at training lengths a sparse forward + backward is a few hundred microseconds of GPU work in five or six launches,
and on the hosts the device tool lends the host took longer to issue them than the GPU to run them: strided n = 12,288
(the issue's 10x case) ran 0.71 ms per eager call against 0.28 ms replayed from a CUDA graph
(benchmarks/KERNEL_NOTES.md). fast_launch.py took Triton's per-launch Python off; what is left is per launch (the
arguments, the descriptors, the driver call). One graph launch per forward and per backward leaves one driver call.

How: a call's key holds everything its launches depend on: the plan (pattern, n, head dim, the switches), the dtypes,
shapes and strides, the scale, and the address of every tensor the kernels read or write. The first call with a key
launches directly. The second is captured into a CUDA graph (on a side stream, in thread-local capture mode, so other
threads' CUDA work is not disturbed) and replayed, and so is every later call with the key. A training loop's caching
allocator hands the same addresses to the same large tensors step after step (its pool for tensors below 1 MB is less
steady, which is why the eager path allocates the row statistics with the large outputs: launch._with_row_stats); in
60-step runs of the small presets 94% (CIFAR-10) and 86% (Enwik8) of the calls replayed, the others' tensors had moved
(results/profiles/replay_diag-5167665ea04c.txt). A call whose addresses never repeat (fresh tensors each time) costs a
dictionary lookup over direct launches.
A replay is bitwise the same computation: the same kernels with the same arguments, which are read from memory when
the graph runs, not when it was captured.

Contract: `launches()` must issue kernel launches only: no allocation, no synchronization, no host reads of device
memory, nothing that depends on state outside `key` (the launchers allocate every buffer before calling run).

When not: under the interpreter, for tensors off the GPU, when fast_launch's direct path is off or a launch hook is
installed (a profiler that must see each launch), while the current stream is being captured (an outer graph, such as
`model.compile_mode reduce-overhead` or bench-kernels' graph_ms, takes the launches themselves), and when disabled:
`ENABLED = False`, or SPARSE_CALL_GRAPHS=0 in the environment. If a capture fails, call graphs are switched off for the
process with a warning that names the error, and the call's launches run directly (`state()` says so too).

Memory: a graph holds no buffer of its own (nothing is allocated while capturing), only its kernels' parameters; at
most MAX_GRAPHS are kept, the oldest dropped first (the driver frees a graph still running once it completes).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict

import torch

from sparse.kernels import fast_launch

ENABLED = os.environ.get("SPARSE_CALL_GRAPHS", "1") != "0"
MAX_GRAPHS = 512
MAX_SEEN = 8192  # keys seen once; forgotten all together when full (the next sighting is then a first one again)

_graphs: OrderedDict[tuple, object] = OrderedDict()
_seen: set[tuple] = set()
_lock = threading.Lock()  # the autograd engine's threads run backwards beside the caller's forwards
_disabled_reason: str | None = None
_side_streams: dict[int, torch.cuda.Stream] = {}
_counts = {"direct": 0, "captured": 0, "replayed": 0}


def active(like: torch.Tensor) -> bool:
    """Whether a call on `like`'s device may use call graphs now (see "When not" in the module docstring)."""
    return (
        ENABLED
        and _disabled_reason is None
        and fast_launch._direct_path(like)
        and not torch.cuda.is_current_stream_capturing()
    )


def run(key: tuple, launches, like: torch.Tensor) -> None:
    """Issue `launches()` for the call named by `key`: directly, or captured and replayed (module docstring)."""
    if not active(like):
        launches()
        return
    with _lock:  # the counts too: state() is read while other threads call
        graph = _graphs.get(key)
        if graph is not None:
            _graphs.move_to_end(key)
            _counts["replayed"] += 1
        elif key not in _seen:  # first sighting
            if len(_seen) >= MAX_SEEN:
                _seen.clear()
            _seen.add(key)
            _counts["direct"] += 1
            graph = False
    if graph is False:
        launches()
        return
    if graph is None:  # second sighting: capture
        graph = _capture_or_disable(launches, like)
        with _lock:
            if graph is None:
                _counts["direct"] += 1
            else:
                _seen.discard(key)
                _graphs[key] = graph
                while len(_graphs) > MAX_GRAPHS:
                    _graphs.popitem(last=False)
                _counts["captured"] += 1
        if graph is None:
            launches()
            return
    graph.replay()


def _capture(launches, like: torch.Tensor):
    """A CUDA graph of `launches()`, captured without running them. The capture runs on a side stream (CUDA captures
    only on non-default streams) in thread-local mode; the replay goes to the caller's current stream."""
    device = like.get_device()
    # Descriptor encoding needs a context current on this thread, and the way fast_launch binds one (a stream query)
    # is not allowed on a capturing stream: bind it first.
    fast_launch._bind_context_to_this_thread()
    stream = _side_streams.get(device)
    if stream is None:
        stream = _side_streams.setdefault(device, torch.cuda.Stream(device=device))
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream):
        graph.capture_begin(capture_error_mode="thread_local")
        try:
            launches()
        finally:
            graph.capture_end()
    return graph


def _capture_or_disable(launches, like: torch.Tensor):
    global _disabled_reason
    try:
        return _capture(launches, like)
    except Exception as err:  # noqa: BLE001 - any failure turns the feature off, loudly, and the call still runs
        first_line = str(err).splitlines()[0] if str(err) else ""
        _disabled_reason = f"{type(err).__name__}: {first_line}"
        warnings.warn(
            f"sparse attention: capturing a call's launches in a CUDA graph failed ({_disabled_reason}); call graphs "
            "are off for this process and every launch is issued directly (slower on the host, same results).",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def state() -> dict:
    """What the call graphs did so far in this process: whether they are on, why not, graphs kept, calls by path."""
    return dict(enabled=ENABLED, disabled_reason=_disabled_reason, graphs=len(_graphs), **_counts)


def clear() -> None:
    """Forget every graph and sighting, and re-enable after a failed capture (tests; or after changing a switch)."""
    global _disabled_reason
    with _lock:
        _graphs.clear()
        _seen.clear()
    _disabled_reason = None
    for name in _counts:
        _counts[name] = 0


fast_launch._on_clear.append(clear)
