"""The Constraint / Compiled / Matcher protocol, composition with `&` and `|`, and the compile cache.

Three stages, each with one job:
- a `Constraint` is a tokenizer-free, hashable spec (`regex`, `choice`, ...);
- `constraint.compile(vocab)` gives an immutable `Compiled` object shared by every request
  (cached in memory and, where the engine allows, on disk);
- `compiled.matcher()` gives the cheap per-sequence `Matcher` that fills mask rows and advances.
"""

from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .bitmask import bitmask_width, ids_from_bits
from .cache import cache_dir, load_pickle, release_freed_memory, store_pickle

if TYPE_CHECKING:
    from .vocab import Vocabulary

_DISK_FORMAT = "1"


class Constraint(ABC):
    """A tokenizer-free spec. Equal specs have equal `key`s and share one compiled form per vocabulary."""

    #: whether `Compiled` objects of this spec may be pickled to the disk cache.
    disk_cacheable: bool = False

    @property
    @abstractmethod
    def key(self) -> str:
        """Canonical text of the spec; the cache key."""

    @abstractmethod
    def _compile(self, vocab: Vocabulary) -> Compiled:
        """Build the compiled form; called at most once per (key, vocabulary) thanks to the cache."""

    def compile(self, vocab: Vocabulary, *, cache: bool = True) -> Compiled:
        """The compiled form for `vocab`, from the cache when possible. Thread-safe."""
        if not cache:
            return self._compile(vocab)
        return COMPILE_CACHE.get_or_compile(self, vocab)

    def __and__(self, other: Constraint) -> Constraint:
        return Intersection((self, _check_constraint(other)))

    def __or__(self, other: Constraint) -> Constraint:
        return Union((self, _check_constraint(other)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Constraint) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key}>"


class Compiled(ABC):
    """Everything precomputable for (spec, vocabulary): immutable, so one object serves all threads."""

    vocab: Vocabulary

    @abstractmethod
    def matcher(self) -> Matcher:
        """A fresh per-sequence state at the start of the constrained text."""

    def attach(self, vocab: Vocabulary) -> None:
        """Re-bind the vocabulary after unpickling from the disk cache (pickles leave it out)."""
        self.vocab = vocab


class Matcher(ABC):
    """Per-sequence state. Not thread-safe: one matcher belongs to one sequence (fork for others)."""

    vocab: Vocabulary

    @abstractmethod
    def fill_bitmask(self, bitmask: np.ndarray, row: int = 0) -> None:
        """Write the allowed next tokens (EOS included exactly when accepting) into `bitmask[row]`."""

    @abstractmethod
    def advance(self, token_id: int) -> bool:
        """Consume a token; False (state unchanged) when the constraint forbids it."""

    @abstractmethod
    def is_accepting(self) -> bool:
        """The text so far is complete: EOS may follow."""

    @abstractmethod
    def is_finished(self) -> bool:
        """No further text is possible (EOS was consumed, or only EOS may follow)."""

    @abstractmethod
    def fork(self) -> Matcher:
        """An independent copy (beam search, sampling several continuations)."""

    @abstractmethod
    def rollback(self, n: int = 1) -> None:
        """Undo the last `n` advanced tokens."""

    def allowed_tokens(self) -> list[int]:
        """The allowed next token ids (debugging and tests; the hot path uses `fill_bitmask`)."""
        row = np.zeros((1, bitmask_width(self.vocab.model_width)), dtype=np.int32)
        self.fill_bitmask(row, 0)
        return ids_from_bits(row[0], self.vocab.model_width).tolist()


def _check_constraint(obj: object) -> Constraint:
    if not isinstance(obj, Constraint):
        raise TypeError(f"can only compose a Constraint with another Constraint, not {type(obj).__name__}")
    return obj


class _Composite(Constraint):
    _symbol = "?"

    def __init__(self, parts: Sequence[Constraint]) -> None:
        flat: list[Constraint] = []
        for part in parts:
            flat.extend(part.parts if type(part) is type(self) else (part,))  # type: ignore[attr-defined]
        if len(flat) < 2:
            raise ValueError(f"{type(self).__name__} needs at least two constraints")
        self.parts: tuple[Constraint, ...] = tuple(flat)
        self._key = "(" + f" {self._symbol} ".join(p.key for p in self.parts) + ")"

    @property
    def key(self) -> str:
        return self._key


class Intersection(_Composite):
    """Both constraints must allow each token (e.g. a grammar and a code monitor)."""

    _symbol = "&"

    def _compile(self, vocab: Vocabulary) -> Compiled:
        return _CompositeCompiled(vocab, tuple(p.compile(vocab) for p in self.parts), _IntersectionMatcher)


class Union(_Composite):
    """Either constraint may be followed; each branch lives while it allows the tokens so far."""

    _symbol = "|"

    def _compile(self, vocab: Vocabulary) -> Compiled:
        return _CompositeCompiled(vocab, tuple(p.compile(vocab) for p in self.parts), _UnionMatcher)


class _CompositeCompiled(Compiled):
    def __init__(self, vocab: Vocabulary, parts: tuple[Compiled, ...], matcher_cls: type) -> None:
        self.vocab = vocab
        self.parts = parts
        self._matcher_cls = matcher_cls

    def matcher(self) -> Matcher:
        return self._matcher_cls(self.vocab, [p.matcher() for p in self.parts])


class _IntersectionMatcher(Matcher):
    def __init__(self, vocab: Vocabulary, parts: list[Matcher]) -> None:
        self.vocab = vocab
        self.parts = parts
        self._scratch = np.empty((1, bitmask_width(vocab.model_width)), dtype=np.int32)

    def fill_bitmask(self, bitmask: np.ndarray, row: int = 0) -> None:
        self.parts[0].fill_bitmask(bitmask, row)
        for part in self.parts[1:]:
            part.fill_bitmask(self._scratch, 0)
            np.bitwise_and(bitmask[row], self._scratch[0], out=bitmask[row])

    def advance(self, token_id: int) -> bool:
        for i, part in enumerate(self.parts):
            if not part.advance(token_id):
                for done in self.parts[:i]:
                    done.rollback(1)
                return False
        return True

    def is_accepting(self) -> bool:
        return all(p.is_accepting() for p in self.parts)

    def is_finished(self) -> bool:
        return any(p.is_finished() for p in self.parts)

    def fork(self) -> Matcher:
        return _IntersectionMatcher(self.vocab, [p.fork() for p in self.parts])

    def rollback(self, n: int = 1) -> None:
        for part in self.parts:
            part.rollback(n)


class _UnionMatcher(Matcher):
    def __init__(self, vocab: Vocabulary, parts: list[Matcher], history: list[tuple[int, ...]] | None = None) -> None:
        self.vocab = vocab
        self.parts = parts
        # history[k] = the branches that consumed token k; the live branches are the last entry.
        self._history = history if history is not None else []
        self._scratch = np.empty((1, bitmask_width(vocab.model_width)), dtype=np.int32)

    def _alive(self) -> tuple[int, ...]:
        return self._history[-1] if self._history else tuple(range(len(self.parts)))

    def fill_bitmask(self, bitmask: np.ndarray, row: int = 0) -> None:
        alive = self._alive()
        self.parts[alive[0]].fill_bitmask(bitmask, row)
        for i in alive[1:]:
            self.parts[i].fill_bitmask(self._scratch, 0)
            np.bitwise_or(bitmask[row], self._scratch[0], out=bitmask[row])

    def advance(self, token_id: int) -> bool:
        took = tuple(i for i in self._alive() if self.parts[i].advance(token_id))
        if not took:
            return False
        self._history.append(took)
        return True

    def is_accepting(self) -> bool:
        return any(self.parts[i].is_accepting() for i in self._alive())

    def is_finished(self) -> bool:
        return all(self.parts[i].is_finished() for i in self._alive())

    def fork(self) -> Matcher:
        return _UnionMatcher(self.vocab, [p.fork() for p in self.parts], list(self._history))

    def rollback(self, n: int = 1) -> None:
        if n > len(self._history):
            raise ValueError(f"cannot roll back {n} tokens: only {len(self._history)} were consumed")
        for _ in range(n):
            for i in self._history.pop():
                self.parts[i].rollback(1)


class CompileCache:
    """Bounded in-memory LRU of compiled constraints, backed by an on-disk pickle cache.

    Defaults: 16 entries in memory (a compiled JSON Schema on a 49k-token vocabulary holds 20-60
    MiB of tables once used), 1 GiB on disk (oldest files pruned first).

    Keys are (spec key, vocabulary fingerprint); a lock makes concurrent compiles of the same
    spec wait for one another instead of compiling twice.
    """

    def __init__(self, *, max_entries: int = 16, disk: bool = True, max_disk_bytes: int = 1 << 30) -> None:
        self.max_entries = max_entries
        self.disk = disk
        self.max_disk_bytes = max_disk_bytes
        self._entries: OrderedDict[tuple[str, str], Compiled] = OrderedDict()
        self._lock = threading.RLock()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _disk_path(self, key: tuple[str, str]):
        digest = hashlib.sha256(f"{_DISK_FORMAT}\0{key[0]}\0{key[1]}".encode()).hexdigest()
        return cache_dir() / "compiled" / f"{digest}.pkl"

    def get_or_compile(self, spec: Constraint, vocab: Vocabulary) -> Compiled:
        key = (spec.key, vocab.fingerprint)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit
            compiled = None
            use_disk = self.disk and spec.disk_cacheable
            if use_disk:
                compiled = load_pickle(self._disk_path(key))
                if compiled is not None:
                    compiled.attach(vocab)
            if compiled is None:
                compiled = spec._compile(vocab)
                release_freed_memory()
                if use_disk:
                    store_pickle(self._disk_path(key), compiled, max_folder_bytes=self.max_disk_bytes)
            self._entries[key] = compiled
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return compiled


COMPILE_CACHE = CompileCache()
