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
