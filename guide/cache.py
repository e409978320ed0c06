"""Where guide keeps what it computes once: converted models, vocabularies, compiled constraints."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """`$GUIDE_CACHE_DIR`, else `$XDG_CACHE_HOME/guide`, else `~/.cache/guide`."""
    explicit = os.environ.get("GUIDE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "guide"


def load_pickle(path: Path) -> Any | None:
    """The object stored at `path`, or None when it is missing or unreadable (a stale or torn file)."""
    try:
        with path.open("rb") as fh:
            return pickle.load(fh)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, ValueError):
        return None


def store_pickle(path: Path, obj: Any, *, max_folder_bytes: int | None = None) -> None:
    """Write atomically (temp file + rename) so concurrent readers never see a torn file.

    With `max_folder_bytes`, the oldest files of the folder are removed until it fits.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if max_folder_bytes is not None:
        prune(path.parent, max_folder_bytes, keep=path)


def prune(folder: Path, max_bytes: int, *, keep: Path | None = None) -> None:
    """Delete the least recently modified `*.pkl` files until the folder holds at most `max_bytes`."""
    entries = []
    for entry in folder.glob("*.pkl"):
        try:
            stat = entry.stat()
        except FileNotFoundError:  # removed by a concurrent pruner
            continue
        entries.append((stat.st_mtime, stat.st_size, entry))
    total = sum(size for _, size, _ in entries)
    for _, size, entry in sorted(entries, key=lambda e: e[0]):
        if total <= max_bytes:
            break
        if entry == keep:
            continue
        entry.unlink(missing_ok=True)
        total -= size


_LIBC = None


def release_freed_memory() -> None:
    """Hand memory freed by a compile back to the OS (glibc's `malloc_trim`).

    A compile allocates and frees hundreds of MiB in large numpy temporaries; glibc keeps them in
    the heap afterwards, so a long-running process that compiles many specs grew by ~40 MiB per
    schema without holding the memory (docs/reliability.md). A no-op off glibc."""
    global _LIBC
    if _LIBC is None:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c")
        try:
            lib = ctypes.CDLL(name) if name else None
            _LIBC = lib if lib is not None and hasattr(lib, "malloc_trim") else False
        except OSError:
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)
