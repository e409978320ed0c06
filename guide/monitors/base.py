"""Monitor-guided decoding (Agrawal et al. 2023): a Constraint that wakes only at its trigger.

A monitor waits (every token allowed, one precomputed mask) until the code ends with its trigger
(`.` for member access, `(` or `,` for call arity, `=` / `(` / `,` / `return ` for name
resolution). It then asks the static-analysis backend once for the names that may follow and
allows exactly the tokens that spell a prefix of such a name, or the whole name and then a
character that ends it (`port(` completes `port` and opens the call in one token). When the name
is done, or the backend cannot tell (unknown type), it goes back to waiting: a monitor never
blocks code the analysis does not understand, and records why in `diagnostics`.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..bitmask import pack_bool
from ..constraint import Compiled, Constraint, Matcher
from ..errors import GuideError
from ..vocab import Vocabulary
from .jedi_backend import CURSOR_PREFIX, JediBackend, backend_for, require_jedi
from .vocab_index import WHITESPACE, VocabIndex, is_ident_byte, vocab_index

MonitorKind = Literal["member", "call", "name"]
KINDS: tuple[MonitorKind, ...] = ("member", "call", "name")
_MASK_CACHE_LIMIT = 512
_PENDING = "pending"


@dataclass(frozen=True)
class _State:
    """Constrained: the next text spells one of `names` (suffixes still to type), or `free` text."""

    names: frozenset[bytes]
    skip_ws: bool
    free: tuple[str, tuple[bytes, ...]] | None


class Monitor(Constraint):
    """One static-analysis monitor over a project; compose with `&` (other monitors, a grammar)."""

    def __init__(self, kind: MonitorKind, root: str | Path, code: str = "", *, path: str | Path = "main.py") -> None:
        if kind not in KINDS:
            raise ValueError(f"monitor kind has to be one of {KINDS}, not {kind!r}")
        if not isinstance(code, str):
            raise TypeError(f"code has to be a str (the code before the cursor), not {type(code).__name__}")
        require_jedi()
        root_path = Path(root).expanduser()
        if not root_path.is_dir():
            raise GuideError(f"monitor project root {str(root)!r} does not exist or is not a directory")
        root_path = root_path.resolve()
        file = Path(path)
        file = (file if file.is_absolute() else root_path / file).resolve()
        if root_path not in file.parents:
            raise GuideError(f"monitor path {str(path)!r} is not inside the project root {str(root_path)!r}")
        if file.suffix != ".py":
            raise GuideError(f"monitor path {str(path)!r} has to name a Python file (.py)")
        self.kind = kind
        self.root = root_path
        self.code = code
        self.path = file
        #: where jedi sees the code being written: a sibling that does not exist on disk.
        self.cursor_path = file.with_name(CURSOR_PREFIX + file.name)
        digest = hashlib.sha256(code.encode("utf-8")).hexdigest()[:16]
        self._key = f"monitor.{kind}({self.root}, path={file.relative_to(root_path)}, code=sha256:{digest})"

    @property
    def key(self) -> str:
        return self._key

    def _compile(self, vocab: Vocabulary) -> MonitorCompiled:
        return MonitorCompiled(vocab, self, vocab_index(vocab), backend_for(self.root))


def quick_trigger(kind: MonitorKind, data: bytes, text_end: bytes) -> bool:
    """Cheap test on the newest bytes; the backend makes the exact decision (strings, comments)."""
    tail = data.rstrip(b" ")
    if kind == "member":
        return data.endswith(b".")
    if not tail:
        return False
    if kind == "call":
        return tail.endswith((b"(", b","))
    if tail.endswith((b"=", b"(", b",")):
        return True
    return data.endswith(b" ") and text_end.rstrip(b" ").endswith(b"return")


class MonitorCompiled(Compiled):
    """Per (monitor, vocabulary): the shared index, the backend and a cache of masks per state."""

    def __init__(self, vocab: Vocabulary, spec: Monitor, index: VocabIndex, backend: JediBackend) -> None:
        self.vocab = vocab
        self.spec = spec
        self.index = index
        self.backend = backend
        self.code_bytes = spec.code.encode("utf-8")
        self.initial = _PENDING if quick_trigger(spec.kind, self.code_bytes, self.code_bytes[-16:]) else None
        self._masks: OrderedDict[_State, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def matcher(self) -> MonitorMatcher:
        return MonitorMatcher(self, bytearray(), self.initial, [], [], 0, False, None)

    def analyse(self, generated: bytes) -> tuple[_State | None, str | None, bool]:
        """(constrained state or None, diagnostic, close guard) at the trigger ending `generated`."""
        text = self.spec.code + generated.decode("utf-8", errors="replace")
        analysis = self.backend.analyse(self.spec.kind, text, self.spec.cursor_path)
        if analysis.names is None:
            return None, analysis.diagnostic, False
        free = None
        if analysis.free is not None:
            free = (analysis.free[0], tuple(p.encode("utf-8") for p in analysis.free[1]))
        names = frozenset(n.encode("utf-8") for n in analysis.names)
        if not names and free is None:
            return None, analysis.diagnostic, False
        return _State(names, analysis.skip_ws, free), analysis.diagnostic, analysis.guard_close

    def mask(self, state: _State) -> tuple[np.ndarray, np.ndarray]:
        """(bool [width], packed int32 row) of the tokens `state` allows; cached."""
        with self._lock:
            hit = self._masks.get(state)
            if hit is not None:
                self._masks.move_to_end(state)
                return hit
        index = self.index
        allowed = np.zeros(index.width, dtype=bool)
        allowed[index.name_ids(state.names, skip_ws=state.skip_ws)] = True
        if state.free is not None:
            mode, prefixes = state.free
            if mode == "only":
                allowed[index.starting_with_any(prefixes)] = True
            elif mode == "except":
                free = index.ordinary.copy()
                free[index.starting_with_any(prefixes)] = False
                allowed |= free
            else:
                allowed |= index.nonident_start
        if accepts(state):
            allowed[index.eos_ids] = True
        entry = (allowed, pack_bool(allowed))
        with self._lock:
            self._masks[state] = entry
            while len(self._masks) > _MASK_CACHE_LIMIT:
                self._masks.popitem(last=False)
        return entry


def accepts(state: _State) -> bool:
    """EOS may come: a name is complete, or the monitor does not insist on a name here."""
    return b"" in state.names or (state.free is not None and state.free[0] in ("except", "nonident"))


def scan_guard(guard: tuple[int, int], data: bytes) -> tuple[int, int] | None:
    """Follow (bracket depth, open quote byte or 0) through `data`; None once the argument ends."""
    depth, quote = guard
    for b in data:
        if quote:
            if b == quote:
                quote = 0
        elif b in (0x22, 0x27):
            quote = b
        elif b == 0x23:
            return None  # a comment: stop following the call
        elif b in (0x28, 0x5B, 0x7B):
            depth += 1
        elif b in (0x29, 0x5D, 0x7D):
            depth -= 1
            if depth < 0:
                return None
        elif b == 0x2C and depth == 0:
            return None
    return depth, quote


_GUARD_START = (0, 0)


def step(state: _State, data: bytes) -> _State | None:
    """The state after the (allowed) token `data`; None = released back to waiting."""
    if state.skip_ws:
        data = data.lstrip(WHITESPACE)
        if not data:
            return state
    left: list[bytes] = []
    for name in state.names:
        if name.startswith(data):
            rest = name[len(data) :]
            if not rest and not is_ident_byte(name[-1]):
                return None  # `port=` is complete: anything may follow
            left.append(rest)
    if left:
        return _State(frozenset(left), False, None)
    return None  # a name and its break character, or free text


class MonitorMatcher(Matcher):
    """Per-sequence monitor state: the generated bytes, waiting / pending / constrained."""

    __slots__ = ("compiled", "diagnostics", "done", "generated", "guard", "history", "state", "triggers")

    def __init__(
        self, compiled: MonitorCompiled, generated: bytearray, state: object, history: list,
        diagnostics: list[str], triggers: int, done: bool, guard: tuple[int, int] | None,
    ) -> None:
        self.compiled = compiled
        self.generated = generated
        self.state = state
        self.history = history
        #: why the monitor let everything through at a trigger (unknown type, no signature, ...).
        self.diagnostics = diagnostics
        #: how many triggers were analysed.
        self.triggers = triggers
        self.done = done
        #: (bracket depth, open quote) inside an argument that must not be the call's last one.
        self.guard = guard

    @property
    def vocab(self) -> Vocabulary:  # type: ignore[override]
        return self.compiled.vocab

    def _resolve(self) -> _State | None:
        if self.state is _PENDING:
            state, diagnostic, guard = self.compiled.analyse(bytes(self.generated))
            self.triggers += 1
            if diagnostic:
                self.diagnostics.append(diagnostic)
            self.state = state
            if guard:
                self.guard = _GUARD_START
        return self.state  # type: ignore[return-value]

    def fill_bitmask(self, bitmask: np.ndarray, row: int = 0) -> None:
        if self.done:
            bitmask[row] = self.compiled.index.eos_mask
            return
        state = self._resolve()
        index = self.compiled.index
        guard = self.guard
        if guard is not None and guard[0] == 0:  # inside an argument that cannot be the last one
            if state is None:
                bitmask[row] = index.guard_masks[guard[1]]
            else:
                np.bitwise_and(self.compiled.mask(state)[1], index.guard_masks[guard[1]], out=bitmask[row])
            return
        bitmask[row] = index.wait_mask if state is None else self.compiled.mask(state)[1]

    def advance(self, token_id: int) -> bool:
        if self.done:
            return False
        c = self.compiled
        vocab = c.vocab
        state = self._resolve()
        if token_id in vocab.eos_ids:
            if state is not None and not accepts(state):
                return False
            self.history.append((len(self.generated), state, len(self.diagnostics), self.triggers, self.guard))
            self.done = True
            return True
        if not 0 <= token_id < vocab.size or token_id in vocab.special_ids or not vocab.tokens[token_id]:
            return False
        if state is not None and not c.mask(state)[0][token_id]:
            return False
        guard = self.guard
        if guard is not None and guard[0] == 0 and c.index.closes_early[guard[1]][token_id]:
            return False
        self.history.append((len(self.generated), state, len(self.diagnostics), self.triggers, self.guard))
        data = vocab.tokens[token_id]
        self.generated += data
        if self.guard is not None:
            self.guard = scan_guard(self.guard, data)
        if state is not None:
            state = step(state, data)
        if state is None and quick_trigger(c.spec.kind, data, bytes(self.generated[-16:])):
            state = _PENDING  # type: ignore[assignment]
        self.state = state
        return True

    def is_accepting(self) -> bool:
        if self.done:
            return True
        state = self._resolve()
        return state is None or accepts(state)

    def is_finished(self) -> bool:
        return self.done

    def fork(self) -> MonitorMatcher:
        return MonitorMatcher(
            self.compiled, bytearray(self.generated), self.state, list(self.history),
            list(self.diagnostics), self.triggers, self.done, self.guard,
        )

    def rollback(self, n: int = 1) -> None:
        if n > len(self.history):
            raise ValueError(f"cannot roll back {n} tokens: only {len(self.history)} were consumed")
        for _ in range(n):
            length, state, n_diag, triggers, guard = self.history.pop()
            del self.generated[length:]
            del self.diagnostics[n_diag:]
            self.state, self.triggers, self.done, self.guard = state, triggers, False, guard

    def allowed_names(self) -> frozenset[str] | None:
        """The name suffixes the monitor insists on now (None while it is waiting); for debugging."""
        state = self._resolve()
        if state is None:
            return None
        return frozenset(n.decode("utf-8", errors="replace") for n in state.names)
