"""A lock shared by every process of this user on the machine: the pytest-xdist workers of a GPU run take turns
with it where one test at a time is all the card's memory allows (tests/sparse/test_kernels.py's float64 reference
at n = 16,384). Standard library only, so that a test can hold it from a bare subprocess."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def one_process_at_a_time(name: str):
    path = Path(tempfile.gettempdir()) / f"sparse-repro-{name}-{os.getuid()}.lock"
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released by the kernel too if the holder dies
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
