"""Static-analysis monitors for code generation (monitor-guided decoding with jedi).

    >>> from guide import monitors
    >>> member = monitors.member_access("myproject", code_before_cursor, path="pkg/app.py")
    >>> guide.generate(model, tok, code_before_cursor, member & guide.regex(r"[^\\n]*\\n"), chat=False)

Each monitor takes a project root (a real directory of Python files) and the code before the
cursor (the prompt; the generated text is appended to it as decoding goes). `path` names the
file being written, relative to the root, so that its imports resolve. Needs the `code` extra
(jedi). There is no built-in Python grammar yet: compose monitors with regexes or lark grammars.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..constraint import Constraint, Intersection
from .base import KINDS, Monitor, MonitorKind, MonitorMatcher


def member_access(root: str | Path, code: str = "", *, path: str | Path = "main.py") -> Monitor:
    """After `obj.`: only attributes and methods of `obj`'s inferred type (or module members)."""
    return Monitor("member", root, code, path=path)


def call_arity(root: str | Path, code: str = "", *, path: str | Path = "main.py") -> Monitor:
    """Inside `f(`: no more positional arguments than the signature takes, only its keyword
    names once positional ones are used up (or a keyword was given), and no `)` while a
    required argument is missing."""
    return Monitor("call", root, code, path=path)


def name_resolution(root: str | Path, code: str = "", *, path: str | Path = "main.py") -> Monitor:
    """After `=`, `return ` and inside argument lists: a name must be defined in scope, a builtin,
    a keyword, or a keyword argument of the call. Names defined later in the file (forward
    references inside functions) are not known to the monitor and are blocked."""
    return Monitor("name", root, code, path=path)


def monitors(
    root: str | Path, code: str = "", *, path: str | Path = "main.py", kinds: Sequence[MonitorKind] = ("member", "call")
) -> Constraint:
    """Several monitors at once (their intersection); `kinds` from "member", "call", "name"."""
    if not kinds:
        raise ValueError(f"kinds has to name at least one of {KINDS}")
    parts = [Monitor(kind, root, code, path=path) for kind in dict.fromkeys(kinds)]
    return parts[0] if len(parts) == 1 else Intersection(parts)


__all__ = ["Monitor", "MonitorMatcher", "call_arity", "member_access", "monitors", "name_resolution"]
