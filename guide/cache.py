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


def store_pickle(path: Path, obj: Any) -> None:
    """Write atomically (temp file + rename) so concurrent readers never see a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
