"""Regular-expression constraints: `guide.regex(pattern)` and `guide.choice([...])`.

pattern -> Python's own parser -> byte DFA (re_compile.py) -> one precomputed bitmask per DFA
state (token_index.py). Filling a mask is one row copy; advancing walks the token's bytes
through the transition table.

Semantics are exactly those of `re.fullmatch(pattern, text)` (Unicode classes unless `(?a)`);
a leading `^` / `\\A` and a trailing `$` / `\\Z` are redundant under full-match and dropped.
Positive lookaheads at the start of a top-level alternative (``(?=A)R|S``) are compiled as an
automaton product (R's strings that start with a match of A, exactly `re.fullmatch`);
backreferences, other lookaround, inner anchors, word boundaries, atomic groups and possessive
repeats are rejected with `UnsupportedFeatureError`. Compilation is bounded (automaton size
and a time budget) and fails with `GrammarError` rather than hang.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..bitmask import bits_from_ids
from ..constraint import Compiled, Constraint, Matcher
from ..errors import EmptyLanguageError, GrammarError
from .bytedfa import ByteDFA
from .re_compile import DEFAULT_MAX_DFA_STATES, DEFAULT_TIME_BUDGET_S, check_supported, compile_regex
from .token_index import state_masks

if TYPE_CHECKING:
    from ..vocab import Vocabulary

_FINISHED = -1


class Regex(Constraint):
    """Text that fully matches `pattern`."""

    disk_cacheable = True

    def __init__(
        self,
        pattern: str,
        *,
        max_dfa_states: int = DEFAULT_MAX_DFA_STATES,
        time_budget_s: float = DEFAULT_TIME_BUDGET_S,
    ) -> None:
        check_supported(pattern)
        if max_dfa_states < 1 or time_budget_s <= 0:
            raise ValueError("`max_dfa_states` and `time_budget_s` have to be positive")
        self.pattern = pattern
        self.max_dfa_states = max_dfa_states
        self.time_budget_s = time_budget_s

    @property
    def key(self) -> str:
        return "regex:" + self.pattern

    def byte_dfa(self) -> ByteDFA:
        return compile_regex(self.pattern, max_dfa_states=self.max_dfa_states, time_budget_s=self.time_budget_s)

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


def regex(
    pattern: str, *, max_dfa_states: int = DEFAULT_MAX_DFA_STATES, time_budget_s: float = DEFAULT_TIME_BUDGET_S
) -> Regex:
    """Constrain the generated text to fully match `pattern` (Python `re` syntax and semantics).

    Compiling is bounded: more than `max_dfa_states` automaton states (default 50,000) or more
    than `time_budget_s` seconds (default 10) raises `GrammarError` instead of hanging.

    Example:
        >>> import guide
        >>> date = guide.regex(r"\\d{4}-\\d{2}-\\d{2}")
    """
    return Regex(pattern, max_dfa_states=max_dfa_states, time_budget_s=time_budget_s)


def choice(options: Sequence[str]) -> Choice:
    """Constrain the generated text to be exactly one of `options`."""
    return Choice(options)


__all__ = ["Choice", "DFACompiled", "DFAMatcher", "Regex", "choice", "regex"]
