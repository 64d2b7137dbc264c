"""Files on disk: the errors every datamodule raises, checksums, atomic writes, downloads and the cache folder.

Contract:
- `DataNotFoundError` (a FileNotFoundError): the data is missing and cannot be downloaded; the message says where
  to put which files. `DataError` (a ValueError): a file is there but unreadable or malformed; the message names
  the file and what was expected. `PartialDataError` (a DataError): the data is readable but is not the official
  set, and the caller did not pass `allow_partial=True`.
- `atomic_path(final)` yields a temporary path beside `final`; it is renamed onto `final` only when the block
  finishes without an exception, and deleted otherwise, so a reader never sees a half-written file.
- `resolve_cache_dir(cache_dir, data_dir)`: an explicit `cache_dir` is used as given (created if needed);
  otherwise `<data_dir>/cache` when `data_dir` is writable (its mode bits grant writing: they count even for
  root), else `$XDG_CACHE_HOME/sparse-repro` (default `~/.cache/sparse-repro`), for read-only data folders such
  as ../shared/data. The fallback is logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


class DataError(ValueError):
    """A data file is unreadable, malformed, or not what the benchmark needs; the message names the file."""


class PartialDataError(DataError):
    """The data found is not the official set (shorter, fewer files, or other checksums) and
    `allow_partial=True` was not passed."""


class DataNotFoundError(FileNotFoundError):
    """The data is missing and cannot be (or was not asked to be) downloaded; the message says what goes where."""


def md5_of_file(path: Path) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def md5_of_bytes(data: bytes | memoryview) -> str:
    return hashlib.md5(data).hexdigest()


def listing_key(paths: list[Path], extra: str = "") -> str:
    """A cheap key for a set of source files (names, sizes, modification times): the cache is rebuilt when any
    file is added, removed, resized or touched. It identifies, it does not verify content."""
    digest = hashlib.sha256(extra.encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path in `final`'s folder; rename it onto `final` on success, delete it on failure."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def download(url: str, destination: Path, description: str) -> None:
    """Download `url` into `destination` with a progress bar. Callers write into an `atomic_path` and check the
    content before leaving its block, so that only checked data ever lands under its final name."""
    log.info("downloading %s from %s", description, url)
    request = urllib.request.Request(url, headers={"User-Agent": "sparse-transformer-repro"})
    with urllib.request.urlopen(request, timeout=60) as response, open(destination, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {description}") as bar:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                bar.update(len(chunk))


def _writable(folder: Path) -> bool:
    """Whether files may be created under `folder` (or its nearest existing parent). The mode bits count even
    for root, who passes os.access everywhere: a folder that grants no write permission is left alone."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return os.access(probe, os.W_OK | os.X_OK) and bool(probe.stat().st_mode & 0o222)


def resolve_cache_dir(cache_dir: str | os.PathLike | None, data_dir: str | os.PathLike) -> Path:
    """Where converted arrays live: see the module docstring."""
    if cache_dir is not None:
        chosen = Path(cache_dir)
    elif _writable(Path(data_dir)):
        chosen = Path(data_dir) / "cache"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        chosen = base / "sparse-repro"
        log.info("data_dir %s is not writable: caching converted data under %s", data_dir, chosen)
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen
