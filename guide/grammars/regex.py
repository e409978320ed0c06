"""Regular-expression constraints: `guide.regex(pattern)` and `guide.choice([...])`.

pattern -> validated with Python's own parser (clear errors, positions) -> interegular FSM ->
byte DFA -> one precomputed bitmask per DFA state. Filling a mask is one row copy; advancing
walks the token's bytes through the transition table.

Semantics are those of `re.fullmatch` with ASCII character classes (`\\d`, `\\w`, `\\s` as with
`re.ASCII`); a leading `^` / `\\A` and a trailing `$` / `\\Z` are redundant under full-match and
dropped. Backreferences, lookaround, inner anchors, word boundaries, atomic groups and
possessive repeats are rejected with `UnsupportedFeatureError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..bitmask import bits_from_ids
from ..constraint import Compiled, Constraint, Matcher
from ..errors import EmptyLanguageError, GrammarError, UnsupportedFeatureError
from .bytedfa import ByteDFA, from_interegular
from .token_index import state_masks

from re import _parser as _sre_parse  # type: ignore[attr-defined]  # Python >= 3.11

if TYPE_CHECKING:
    from ..vocab import Vocabulary

_UNSUPPORTED_OPS = {
    "GROUPREF": "backreference",
    "GROUPREF_EXISTS": "conditional group (?(id)yes|no)",
    "ASSERT": "lookaround assertion (?=...) / (?<=...)",
    "ASSERT_NOT": "negative lookaround assertion (?!...) / (?<!...)",
    "AT": "anchor or word boundary inside the pattern (^, $, \\b, \\B)",
    "ATOMIC_GROUP": "atomic group (?>...)",
    "POSSESSIVE_REPEAT": "possessive repeat (*+, ++, ?+)",
}
_FINISHED = -1


def _caret(pattern: str, pos: int | None) -> str:
    if pos is None:
        return ""
    return f"\n  {pattern}\n  {' ' * pos}^"


def _strip_anchors(pattern: str) -> str:
    if pattern.startswith("^"):
        pattern = pattern[1:]
    elif pattern.startswith("\\A"):
        pattern = pattern[2:]
    for anchor in ("$", "\\Z"):
        if pattern.endswith(anchor):
            body = pattern[: -len(anchor)]
            trailing = len(body) - len(body.rstrip("\\"))
            if trailing % 2 == 0:
                return body
    return pattern


def _expand_unicode_escapes(pattern: str) -> str:
    """Rewrite \\uXXXX / \\UXXXXXXXX (which interegular lacks) as \\xNN or the literal character."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch != "\\" or i + 1 >= len(pattern):
            out.append(ch)
            i += 1
            continue
        kind = pattern[i + 1]
        digits = {"u": 4, "U": 8}.get(kind)
        if digits is None:
            out.append(pattern[i : i + 2])
            i += 2
            continue
        cp = int(pattern[i + 2 : i + 2 + digits], 16)  # validity already checked by re
        out.append(f"\\x{cp:02x}" if cp < 0x100 else re.escape(chr(cp)))
        i += 2 + digits
    return "".join(out)


def _check_supported(pattern: str, tree) -> None:
    for op, arg in tree:
        name = str(op)
        if name in _UNSUPPORTED_OPS:
            raise UnsupportedFeatureError(
                f"regex {pattern!r} uses a {_UNSUPPORTED_OPS[name]}, which a finite automaton cannot "
                "express; rewrite the pattern without it",
                feature=name.lower(),
                where=pattern,
            )
        children = []
        if name in ("SUBPATTERN",):
            children = [arg[-1]]
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            children = [arg[2]]
        elif name == "BRANCH":
            children = list(arg[1])
        for child in children:
            _check_supported(pattern, child)


def _validate(pattern: str) -> str:
    """Check the pattern with Python's own parser (cheap, precise errors); return the anchor-free body."""
    if not isinstance(pattern, str):
        raise TypeError(f"`pattern` has to be a str, but is {type(pattern).__name__}")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise GrammarError(f"invalid regex: {exc.msg} at position {exc.pos}{_caret(pattern, exc.pos)}") from exc
    body = _strip_anchors(pattern)
    _check_supported(pattern, _sre_parse.parse(body))
    return body


def _to_fsm(pattern: str, body: str):
    """The interegular FSM (character level); the costly part, so it runs at compile time."""
    import interegular

    try:
        return interegular.parse_pattern(_expand_unicode_escapes(body)).to_fsm()
    except interegular.patterns.Unsupported as exc:
        raise UnsupportedFeatureError(
            f"regex {pattern!r} uses a construct guide cannot compile: {exc}", feature="regex", where=pattern
        ) from exc


class Regex(Constraint):
    """Text that fully matches `pattern`."""

    disk_cacheable = True

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._body = _validate(pattern)

    @property
    def key(self) -> str:
        return "regex:" + self.pattern

    def byte_dfa(self) -> ByteDFA:
        return from_interegular(_to_fsm(self.pattern, self._body))

    def _compile(self, vocab: Vocabulary) -> Compiled:
        dfa = self.byte_dfa()
        if dfa.initial == dfa.dead:
            raise EmptyLanguageError(f"{self!r} matches no string at all")
        compiled = DFACompiled(vocab, dfa, state_masks(dfa, vocab))
        if not compiled.masks[dfa.initial].any():
            raise EmptyLanguageError(
                f"{self!r}: no token of the vocabulary can start a matching text "
                "(the first bytes it needs are not the prefix of any token)"
            )
        return compiled


class Choice(Regex):
    """Exactly one of the given strings."""

    def __init__(self, options: Sequence[str]) -> None:
        if isinstance(options, str) or not all(isinstance(o, str) for o in options):
            raise TypeError("`options` has to be a sequence of str")
        if not options:
            raise GrammarError("`options` has to contain at least one string")
        self.options = tuple(dict.fromkeys(options))
        super().__init__("|".join(re.escape(o) for o in self.options))

    @property
    def key(self) -> str:
        return "choice:" + json.dumps(self.options, ensure_ascii=False)


class DFACompiled(Compiled):
    """A byte DFA with one bitmask per state: immutable and shared by every matcher."""

    def __init__(self, vocab: Vocabulary, dfa: ByteDFA, masks: np.ndarray) -> None:
        self.vocab = vocab
        self.dfa = dfa
        self.masks = masks
        self._prepare()

    def _prepare(self) -> None:
        dfa = self.dfa
        self.rows: list[list[int]] = dfa.transitions.tolist()
        self.accepting: list[bool] = dfa.accepting.tolist()
        no_exit = (dfa.transitions[: dfa.n_states] == dfa.dead).all(axis=1)
        self.terminal: list[bool] = (no_exit & dfa.accepting).tolist()
        self.eos_mask = bits_from_ids(sorted(self.vocab.eos_ids), self.vocab.model_width)

    def __getstate__(self) -> dict:
        return {"dfa": self.dfa, "masks": self.masks}

    def __setstate__(self, state: dict) -> None:
        self.dfa = state["dfa"]
        self.masks = state["masks"]

    def attach(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        self._prepare()

    def matcher(self) -> DFAMatcher:
        return DFAMatcher(self, self.dfa.initial, [])


class DFAMatcher(Matcher):
    __slots__ = ("compiled", "state", "history")

    def __init__(self, compiled: DFACompiled, state: int, history: list[int]) -> None:
        self.compiled = compiled
        self.state = state
        self.history = history

    @property
    def vocab(self) -> Vocabulary:  # type: ignore[override]
        return self.compiled.vocab

    def fill_bitmask(self, bitmask: np.ndarray, row: int = 0) -> None:
        c = self.compiled
        bitmask[row] = c.eos_mask if self.state == _FINISHED else c.masks[self.state]

    def advance(self, token_id: int) -> bool:
        c = self.compiled
        q = self.state
        if q == _FINISHED:
            return False
        vocab = c.vocab
        if token_id in vocab.eos_ids:
            if not c.accepting[q]:
                return False
            self.history.append(q)
            self.state = _FINISHED
            return True
        if token_id < 0 or token_id >= vocab.size or token_id in vocab.special_ids:
            return False
        data = vocab.tokens[token_id]
        if not data:
            return False
        rows, dead = c.rows, c.dfa.dead
        for b in data:
            q = rows[q][b]
            if q == dead:
                return False
        self.history.append(self.state)
        self.state = q
        return True

    def is_accepting(self) -> bool:
        return self.state == _FINISHED or self.compiled.accepting[self.state]

    def is_finished(self) -> bool:
        return self.state == _FINISHED or self.compiled.terminal[self.state]

    def fork(self) -> DFAMatcher:
        return DFAMatcher(self.compiled, self.state, list(self.history))

    def rollback(self, n: int = 1) -> None:
        if n > len(self.history):
            raise ValueError(f"cannot roll back {n} tokens: only {len(self.history)} were consumed")
        for _ in range(n):
            self.state = self.history.pop()


def regex(pattern: str) -> Regex:
    """Constrain the generated text to fully match `pattern` (Python `re` syntax, ASCII classes).

    Example:
        >>> import guide
        >>> date = guide.regex(r"\\d{4}-\\d{2}-\\d{2}")
    """
    return Regex(pattern)


def choice(options: Sequence[str]) -> Choice:
    """Constrain the generated text to be exactly one of `options`."""
    return Choice(options)


__all__ = ["Choice", "DFACompiled", "DFAMatcher", "Regex", "choice", "regex"]
