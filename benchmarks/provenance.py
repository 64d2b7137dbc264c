"""Where a number came from: the fields every result row and the environment report carry.

`provenance()` returns a flat dict of strings (date, commit, gpu, versions, kernel mode). It never raises:
a field that cannot be read is recorded as "unknown", so a missing git binary cannot lose a measurement.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def git_commit(short: bool = True) -> str:
    """The checked-out commit, with '+dirty' when tracked files other than results/ and README.md differ from
    it; 'unknown' outside git.

    SPARSE_REPRO_COMMIT, when set, wins: a copied working tree (the GPU machines receive one) can carry a
    stale .git that would name the wrong commit; the scripts that ship the tree set it to the commit shipped."""
    declared = os.environ.get("SPARSE_REPRO_COMMIT")
    if declared:
        return declared
    try:
        args = ["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12" if short else "--verify", "HEAD"]
        sha = subprocess.run(args, capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        # The suite's own outputs (results/, the README's report block) change during a run: they do not make
        # the code that produced a number dirty.
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(REPO_ROOT),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)results",
                ":(exclude)README.md",
            ],  # fmt: skip
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def gpu_name() -> str:
    """The first CUDA device's name, or 'cpu'."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


def kernel_mode() -> str:
    """How Triton kernels will run here: compiled for a GPU, or under the CPU interpreter."""
    import torch

    if os.environ.get("TRITON_INTERPRET") == "1":
        return "interpreter (TRITON_INTERPRET=1)"
    if torch.cuda.is_available():
        from sparse.attention import check_gpu
        from sparse.kernels.launch import gpu_target
        from sparse.kernels.plan import HOPPER_ARCH

        device, planned = gpu_target(0, hopper_features=True), gpu_target(0)
        try:
            check_gpu(torch.device("cuda", 0), torch.bfloat16)
        except ValueError as refused:
            return f"unavailable on this GPU: {refused}"
        if planned["arch"] >= HOPPER_ARCH:
            path = "Hopper's path: tiles by tensor descriptor, programmatic dependent launch"
        else:
            forced = " (SPARSE_HOPPER_FEATURES=0)" if device["arch"] >= HOPPER_ARCH else ""
            path = f"the older GPUs' path{forced}: tiles by pointer, launches in sequence; tiles tuned on sm_90"
        return f"compiled (CUDA, sm_{device['arch']}, {device['shared_bytes'] // 1024} KB shared per block; {path})"
    return "unavailable: no CUDA device; set TRITON_INTERPRET=1 to run kernels on the CPU (slow)"


def provenance() -> dict[str, str]:
    """The provenance fields of DESIGN.md section 5, as strings."""
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:  # pragma: no cover - triton ships with torch on Linux
        triton_version = "absent"
    try:
        import lightning

        lightning_version = lightning.__version__
    except ImportError:  # pragma: no cover
        lightning_version = "absent"
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": git_commit(),
        "gpu": gpu_name(),
        "gpu_count": str(torch.cuda.device_count()),
        "cuda": torch.version.cuda or "none",
        "torch": torch.__version__,
        "triton": triton_version,
        "lightning": lightning_version,
        "python": platform.python_version(),
        "host": platform.machine(),
    }


def environment_report() -> str:
    """A human-readable report of the environment, one field per line."""
    import numpy
    import torchmetrics

    fields = provenance()
    fields["numpy"] = numpy.__version__
    fields["torchmetrics"] = torchmetrics.__version__
    fields["kernels"] = kernel_mode()
    width = max(len(k) for k in fields)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in fields.items())


def provenance_line() -> str:
    """`# gpu: ...; torch ...; triton ...; commit ...; date`: the first line of a saved printout (profile_kernels,
    tune_tiles), which the report reads to say where and with what the file was made."""
    prov = provenance()
    fields = (f"torch {prov['torch']}", f"triton {prov['triton']}", f"commit {prov['commit']}", prov["date"])
    return f"# gpu: {prov['gpu']}; " + "; ".join(fields)
