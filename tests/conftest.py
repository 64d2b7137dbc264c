"""Test set-up shared by every test.

Triton kernels run on the CPU through the interpreter: TRITON_INTERPRET must be set before triton is first
imported, so it is set here, at collection time, when no CUDA device is present. On the GPU machine the same
tests run compiled, and tests marked `cuda` run too.
"""

import gc
import os

import pytest

try:
    import torch

    _HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _HAS_CUDA = False

if not _HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if _HAS_CUDA:
        return
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_cuda)


@pytest.fixture(autouse=True)
def cached_gpu_memory_handed_back(request):
    """`pytest -m cuda -n 12` (benchmarks/gpu_session.sh) puts twelve processes on one card, and each kept the blocks
    its earlier tests had cached: at 3957e72d6b3c five of 114 tests failed with CUDA out of memory on an H200 (139 GiB)
    where the same tests had passed before. A `cuda` test hands its cached blocks back when it ends (the float64
    references of n = 16,384 also take turns: tests/process_lock.py)."""
    yield
    if _HAS_CUDA and "cuda" in request.keywords:
        gc.collect()
        torch.cuda.empty_cache()


@pytest.fixture
def device() -> str:
    return "cuda" if _HAS_CUDA else "cpu"


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP spin-waits, which make every op 100x slower on a
    busy 2-core machine. Modules opt in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
