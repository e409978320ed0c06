"""The static-analysis backend: jedi, in process, one query per trigger, cached.

jedi caches parses by file path, so the code being written is never given the path of a file
that exists: it is analysed as a sibling `__guide_cursor__<name>.py` of the file it belongs to,
which keeps relative imports working and leaves jedi's view of the real files untouched.
"""

from __future__ import annotations

import dataclasses
import io
import keyword
import logging
import re
import threading
import time
import tokenize
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError

log = logging.getLogger("guide.monitors")

_CACHE_LIMIT = 2048
_EXPRESSION_KEYWORDS = ("lambda", "not", "None", "True", "False", "await", "yield")
_STRING_PREFIXES = ("r", "b", "f", "u", "rb", "br", "fr", "rf")


def require_jedi() -> Any:
    """Import jedi, or say which extra installs it."""
    try:
        import jedi
    except ImportError as exc:
        raise MissingDependencyError(
            "guide.monitors needs jedi for static analysis: pip install 'guide-decoding[code]' "
            "(the `code` extra)"
        ) from exc
    return jedi


@dataclass(frozen=True)
class Analysis:
    """What the backend says at one trigger.

    `names` None means "do not constrain" (and `diagnostic` says why when that is news to the
    user: an unknown type, an unknown signature). Otherwise the next text must spell one of
    `names` (names ending in a non-identifier character, like `port=`, may run on freely), after
    optional whitespace when `skip_ws`; `free` lists what else may come instead and releases the
    monitor: ("only", prefixes), ("except", prefixes) or ("nonident", ()).
    """

    names: frozenset[str] | None
    skip_ws: bool = False
    free: tuple[str, tuple[str, ...]] | None = None
    diagnostic: str | None = None
    seconds: float = 0.0
    #: the argument now being typed cannot be the last one (two or more required parameters are
    #: missing): a `)` that would close the call right after it is premature.
    guard_close: bool = False


UNCONSTRAINED = Analysis(None)


def code_context(text: str) -> str:
    """'code', 'string' or 'comment': where the end of `text` lies (a prefix, so it may not parse)."""
    last = None
    last_line = text.count("\n") + 1
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.ERRORTOKEN and tok.string.strip() in ("'", '"') and tok.start[0] == last_line:
                return "string"  # an unterminated one-line string runs to the end
            if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.DEDENT, tokenize.INDENT):
                continue
            last = tok
    except tokenize.TokenError as exc:
        if "string" in str(exc.args[0]):
            return "string"
    except (SyntaxError, ValueError):  # e.g. inconsistent dedent in a half-written block
        pass
    if last is None:
        return "code"
    if last.type == tokenize.COMMENT and last.end[0] == text.count("\n") + 1:
        return "comment"
    if last.type == tokenize.ERRORTOKEN and last.string.strip() in ("'", '"'):
        return "string"
    return "code"


def _position(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines), len(lines[-1])


_NUMBER_BEFORE_DOT = re.compile(r"(?:^|[^\w.])\d[\w]*\.$")


class JediBackend:
    """One jedi Project per root and one answer per (kind, code before the cursor), thread-safe."""

    def __init__(self, root: Path) -> None:
        self.jedi = require_jedi()
        self.root = root
        self.project = self.jedi.Project(str(root))
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str, str], Analysis] = OrderedDict()
        #: member names per inferred type (full name, instance/class/module), from files on disk.
        self._members: dict[tuple, frozenset[str]] = {}
        self.queries = 0

    def analyse(self, kind: str, text: str, path: Path) -> Analysis:
        key = (kind, str(path), text)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            started = time.perf_counter()
            analysis = getattr(self, f"_{kind}")(text, path)
            self.queries += 1
            seconds = time.perf_counter() - started
            analysis = dataclasses.replace(analysis, seconds=seconds)
            self._cache[key] = analysis
            while len(self._cache) > _CACHE_LIMIT:
                self._cache.popitem(last=False)
        if analysis.diagnostic:
            log.info("%s", analysis.diagnostic)
        return analysis

    def _script(self, text: str, path: Path) -> Any:
        return self.jedi.Script(code=text, path=str(path), project=self.project)

    # -- member access ---------------------------------------------------------------------

    def _member(self, text: str, path: Path) -> Analysis:
        if not text.endswith(".") or text.endswith("..") or _NUMBER_BEFORE_DOT.search(text):
            return UNCONSTRAINED
        if code_context(text) != "code":
            return UNCONSTRAINED
        line, col = _position(text)
        where = f"{path.name.removeprefix(CURSOR_PREFIX)}:{line}:{col}"
        script = self._script(text, path)
        # One jedi `complete` per type, not per trigger: infer the type of the name before the
        # dot (~10 ms) and reuse the member list of a type seen before (complete costs 3-5x more).
        defs = script.infer(line, col - 2) if len(text) > 1 and (text[-2].isalnum() or text[-2] == "_") else []
        for d in defs:
            end = d.get_definition_end_position()
            if d.module_path is not None and Path(d.module_path) == path and end is not None and end[0] >= line:
                return Analysis(None, diagnostic=f"{where}: {d.name} is still being defined here; not constraining")
        key = None
        if defs and all(d.full_name and (d.module_path is None or Path(d.module_path) != path) for d in defs):
            key = tuple(sorted((d.full_name, d.type) for d in defs))
            hit = self._members.get(key)
            if hit is not None:
                return Analysis(hit)
        # Filter by name: `Completion.type` would infer every member's value (10x the query).
        completions = [c for c in script.complete(line, col) if not keyword.iskeyword(c.name)]
        if not completions:
            return Analysis(None, diagnostic=f"{where}: jedi cannot infer the type before '.'; not constraining")
        if not defs and any(c.module_path is not None and Path(c.module_path) == path for c in completions):
            # Members from the unfinished buffer of an expression jedi could not name: the class
            # may still be growing below the cursor.
            return Analysis(None, diagnostic=f"{where}: members come from the unfinished file; not constraining")
        names = frozenset(c.name for c in completions)
        if key is not None:
            self._members[key] = names
        return Analysis(names)

    # -- call arity and keyword names ------------------------------------------------------

    def _call(self, text: str, path: Path) -> Analysis:
        stripped = text.rstrip(" ")
        if not stripped.endswith(("(", ",")) or code_context(text) != "code":
            return UNCONSTRAINED
        line, col = _position(text)
        where = f"{path.name.removeprefix(CURSOR_PREFIX)}:{line}:{col}"
        signatures = self._script(text, path).get_signatures(line, col)
        if not signatures:
            if stripped.endswith("(") and re.search(r"[\w)\]]\s*\($", stripped) and not _defines(stripped):
                return Analysis(None, diagnostic=f"{where}: jedi knows no signature for this call; not constraining")
            return UNCONSTRAINED
        if len(signatures) > 1:
            return Analysis(None, diagnostic=f"{where}: {len(signatures)} signatures (overloads); not constraining")
        sig = signatures[0]
        args = _split_arguments(text, sig.bracket_start)
        if args is None:
            return UNCONSTRAINED
        positional, keywords, unpacked = args
        if unpacked:
            return UNCONSTRAINED
        params = sig.params
        kinds = [p.kind.name for p in params]
        if "VAR_POSITIONAL" in kinds:
            return UNCONSTRAINED
        max_positional = sum(k in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD") for k in kinds)
        if positional > max_positional:
            return Analysis(None, diagnostic=f"{where}: {sig.name}() already has too many positional arguments")
        keyword_names = [
            p.name for i, p in enumerate(params)
            if (p.kind.name == "KEYWORD_ONLY" or (p.kind.name == "POSITIONAL_OR_KEYWORD" and i >= positional))
            and p.name not in keywords
        ]
        required_left = [
            p.name for i, p in enumerate(params)
            if p.kind.name in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY")
            and not _has_default(p) and p.name not in keywords
            and not (p.kind.name != "KEYWORD_ONLY" and i < positional)
        ]
        closable = not required_left
        guard = len(required_left) >= 2
        if keywords or positional >= max_positional:
            if "VAR_KEYWORD" in kinds:
                if closable:
                    return UNCONSTRAINED
                return Analysis(frozenset(), skip_ws=True, free=("except", (")",)), guard_close=guard)
            names = frozenset(n + s for n in keyword_names for s in ("=", " ="))
            free = (")", "**") if closable else ("**",)
            return Analysis(names, skip_ws=True, free=("only", free), guard_close=guard)
        if not closable:
            return Analysis(frozenset(), skip_ws=True, free=("except", (")",)), guard_close=guard)
        return UNCONSTRAINED

    # -- name resolution -------------------------------------------------------------------

    def _name(self, text: str, path: Path) -> Analysis:
        stripped = text.rstrip(" ")
        if code_context(text) != "code":
            return UNCONSTRAINED
        line, col = _position(text)
        where = f"{path.name.removeprefix(CURSOR_PREFIX)}:{line}:{col}"
        script = self._script(text, path)
        if stripped.endswith(("(", ",")):
            signatures = script.get_signatures(line, col)
            if not signatures:
                return UNCONSTRAINED  # a tuple, a def's parameters, a subscript: not an argument list
            if any(p.kind.name == "VAR_KEYWORD" for s in signatures for p in s.params):
                return UNCONSTRAINED  # any keyword name may follow
        elif not (stripped.endswith("=") or (text != stripped and re.search(r"(?:^|[^\w.])return$", stripped))):
            return UNCONSTRAINED
        completions = [c for c in script.complete(line, col) if c.type != "path"]
        if not completions:
            return Analysis(None, diagnostic=f"{where}: jedi lists no names in scope here; not constraining")
        names = set()
        for c in completions:
            names.add(c.name)
            if c.name.endswith("="):
                names.add(c.name[:-1] + " =")
        names.update(_EXPRESSION_KEYWORDS)  # jedi omits keywords when the cursor touches `=`
        names.update(_STRING_PREFIXES)
        names.update(p.upper() for p in _STRING_PREFIXES)
        return Analysis(frozenset(names), skip_ws=True, free=("nonident", ()))


CURSOR_PREFIX = "__guide_cursor__"


def _defines(text: str) -> bool:
    line = text.rsplit("\n", 1)[-1].lstrip()
    return line.startswith(("def ", "class ", "async def "))


def _has_default(param: Any) -> bool:
    """jedi omits dataclass defaults from some views, so read them from the parameter text."""
    return "=" in param.to_string()


def _split_arguments(text: str, bracket_start: tuple[int, int]) -> tuple[int, set[str], bool] | None:
    """(positional count, keyword names, uses * or ** unpacking) of the call's finished arguments."""
    lines = text.split("\n")
    line, col = bracket_start
    if line > len(lines):
        return None
    inner = "\n".join([lines[line - 1][col + 1 :], *lines[line:]])
    args: list[str] = []
    depth = 0
    current = []
    quote: str | None = None
    for ch in inner:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                return None
        elif ch == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    if depth or quote:
        return None  # the cursor is inside a nested bracket or a string: not an argument slot
    positional, keywords, unpacked = 0, set(), False
    for arg in args:
        match = re.match(r"([A-Za-z_]\w*)\s*=(?!=)", arg)
        if match:
            keywords.add(match.group(1))
        elif arg.startswith("*"):
            unpacked = True
        elif arg:
            positional += 1
    return positional, keywords, unpacked


_BACKENDS: dict[str, JediBackend] = {}
_BACKENDS_LOCK = threading.Lock()


def backend_for(root: Path) -> JediBackend:
    """The shared backend of a project root (its jedi Project and answer cache)."""
    with _BACKENDS_LOCK:
        backend = _BACKENDS.get(str(root))
        if backend is None:
            backend = _BACKENDS[str(root)] = JediBackend(root)
        return backend
