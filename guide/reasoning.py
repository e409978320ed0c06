"""Reasoning, then a constrained answer (CRANE), and the decoupled two-pass variant.

`reasoning_then(inner, open="<think>", close="</think>", max_reasoning_tokens=256)` is one
constraint over the whole output ``open + reasoning + close + answer``:

1. the `open` delimiter is forced (skip it with ``open=""`` when the prompt already ends in it);
2. reasoning is free text, except that no token may run past the end of `close` (the answer
   starts exactly at a token boundary) and special tokens (EOS included) are not allowed;
3. once `close` has been written (on the decoded bytes, so it may span several tokens), the
   inner constraint's matcher takes over: the switch happens inside one generation, on the same
   KV cache;
4. after `max_reasoning_tokens` reasoning tokens, only tokens that continue `close` are allowed,
   so reasoning stops there and the answer follows.

Delimiters are matched as bytes (a KMP automaton), so they need not be single tokens; a
delimiter the vocabulary cannot spell raises `GrammarError` at compile time.

`decoupled(model, tok, prompt, inner)` is the "solve first, format second" variant: an
unconstrained answer, then a second generation that rewrites it under `inner`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .bitmask import pack_bool
from .constraint import Compiled, Constraint, Matcher, _check_constraint
from .errors import GrammarError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from .vocab import Vocabulary

DEFAULT_MAX_REASONING_TOKENS = 256
_OPEN, _FREE, _ANSWER = 0, 1, 2


def _kmp(pattern: bytes) -> np.ndarray:
    """int32 [m + 1, 256]: the automaton that finds `pattern` in a byte stream (state = bytes matched)."""
    m = len(pattern)
    trans = np.zeros((m + 1, 256), dtype=np.int32)
    fail = 0
    for k in range(m + 1):
        if k == m:
            trans[k] = m  # absorbing: the delimiter has been seen
            break
        trans[k] = trans[fail] if k else 0
        trans[k, pattern[k]] = k + 1
        if k:
            fail = int(trans[fail, pattern[k]])
    return trans


def _spellable(vocab: Vocabulary, text: bytes) -> list[bool]:
    """ok[k]: text[k:] can be written as a sequence of text tokens (ok[len(text)] is True)."""
    pieces = {t for i, t in enumerate(vocab.tokens) if t and i not in vocab.special_ids and text.find(t) >= 0}
    ok = [False] * (len(text) + 1)
    ok[len(text)] = True
    for k in range(len(text) - 1, -1, -1):
        ok[k] = any(ok[k + n] for n in range(1, len(text) - k + 1) if text[k : k + n] in pieces)
    return ok


def _prefix_masks(vocab: Vocabulary, text: bytes, what: str) -> np.ndarray:
    """int32 [len(text), W]: row k allows the tokens that write text[k:k+n] and leave a spellable rest."""
    ok = _spellable(vocab, text)
    if not ok[0]:
        raise GrammarError(f"the {what} delimiter {text!r} cannot be written with this vocabulary's tokens")
    allowed = np.zeros((max(len(text), 1), vocab.model_width), dtype=bool)
    for i, tok in enumerate(vocab.tokens):
        if not tok or i in vocab.special_ids:
            continue
        for k in range(len(text)):
            if text.startswith(tok, k) and ok[k + len(tok)]:
                allowed[k, i] = True
    return pack_bool(allowed)


def _free_masks(vocab: Vocabulary, trans: np.ndarray) -> np.ndarray:
    """int32 [m, W]: row k allows every text token that, read from KMP state k, does not run past the
    end of the delimiter (it may end exactly on it). Vectorised over tokens (longest first)."""
    from .grammars.token_index import token_table

    table = token_table(vocab)
    m = trans.shape[0] - 1
    n = len(table.ids)
    allowed = np.zeros((m, vocab.model_width), dtype=bool)
    for k in range(m):
        state = np.full(n, k, dtype=np.int32)
        crossed = np.zeros(n, dtype=bool)  # reached the full delimiter before the token's last byte
        for col in range(table.data.shape[1]):
            live = int(np.searchsorted(-table.lengths, -col, side="left"))  # rows with length > col
            if live == 0:
                break
            rows = slice(0, live)
            before = state[rows]
            crossed[rows] |= (before == m)
            state[rows] = trans[before, table.data[rows, col]]
        allowed[k, table.ids[~crossed]] = True
    return pack_bool(allowed)


class ReasoningThen(Constraint):
    """``open`` + free reasoning (at most `max_reasoning_tokens` tokens) + ``close`` + `inner`."""

    def __init__(
        self,
        inner: Constraint,
        *,
        open: str = "<think>",
        close: str = "</think>",
        max_reasoning_tokens: int | None = DEFAULT_MAX_REASONING_TOKENS,
    ) -> None:
        self.inner = _check_constraint(inner)
        if not isinstance(open, str) or not isinstance(close, str):
            raise TypeError("`open` and `close` have to be strings")
        if not close:
            raise ValueError("`close` has to be a non-empty delimiter: it is what ends the reasoning")
        if max_reasoning_tokens is not None and (
            not isinstance(max_reasoning_tokens, int) or max_reasoning_tokens < 0
        ):
            raise ValueError(f"`max_reasoning_tokens` has to be None or an int >= 0, but is {max_reasoning_tokens!r}")
        self.open = open
        self.close = close
        self.max_reasoning_tokens = max_reasoning_tokens
        self._key = "reasoning_then:" + json.dumps([open, close, max_reasoning_tokens]) + ":" + inner.key

    @property
    def key(self) -> str:
        return self._key

    def _compile(self, vocab: Vocabulary) -> Compiled:
        return ReasoningCompiled(self, vocab, self.inner.compile(vocab))


class ReasoningCompiled(Compiled):
    def __init__(self, spec: ReasoningThen, vocab: Vocabulary, inner: Compiled) -> None:
        self.vocab = vocab
        self.inner = inner
        self.open = spec.open.encode()
        self.close = spec.close.encode()
        self.cap = spec.max_reasoning_tokens
        self.trans = _kmp(self.close)
        self.open_masks = _prefix_masks(vocab, self.open, "open") if self.open else None
        self.forced_masks = _prefix_masks(vocab, self.close, "close")
        self.free_masks = _free_masks(vocab, self.trans)

    def matcher(self) -> ReasoningMatcher:
        phase = _OPEN if self.open else _FREE
        return ReasoningMatcher(self, phase, 0, 0, None, [])


@dataclass
class _Step:
    phase: int
    pos: int
    used: int
    inner: bool  # the token went to the inner matcher


class ReasoningMatcher(Matcher):
    """State: phase (open / free / answer), bytes matched of the current delimiter, reasoning tokens used."""

    def __init__(
        self, compiled: ReasoningCompiled, phase: int, pos: int, used: int, inner: Matcher | None, history: list[_Step]
    ) -> None:
        self.compiled = compiled
        self.vocab = compiled.vocab
        self.phase = phase
        self.pos = pos
        self.used = used
        self.inner = inner
        self.history = history

    @property
    def reasoning_tokens(self) -> int:
        """Tokens written in the free phase so far (the forced end of `close` included)."""
        return self.used

    def _row(self) -> np.ndarray:
        c = self.compiled
        if self.phase == _OPEN:
            return c.open_masks[self.pos]
        if c.cap is not None and self.used >= c.cap:
            return c.forced_masks[self.pos]
        return c.free_masks[self.pos]

    def fill_bitmask(self, bitmask: np.ndarray, row: int = 0) -> None:
        if self.phase == _ANSWER:
            self.inner.fill_bitmask(bitmask, row)
        else:
            bitmask[row] = self._row()

    def advance(self, token_id: int) -> bool:
        c = self.compiled
        if self.phase == _ANSWER:
            if not self.inner.advance(token_id):
                return False
            self.history.append(_Step(self.phase, self.pos, self.used, True))
            return True
        if not 0 <= token_id < self.vocab.model_width or not (int(self._row()[token_id >> 5]) >> (token_id & 31)) & 1:
            return False
        self.history.append(_Step(self.phase, self.pos, self.used, False))
        data = self.vocab.tokens[token_id]
        if self.phase == _OPEN:
            self.pos += len(data)
            if self.pos == len(c.open):
                self.phase, self.pos = _FREE, 0
            return True
        self.used += 1
        q = self.pos
        for b in data:
            q = int(c.trans[q, b])
        self.pos = q
        if q == len(c.close):
            self.phase, self.pos, self.inner = _ANSWER, 0, c.inner.matcher()
        return True

    def is_accepting(self) -> bool:
        return self.phase == _ANSWER and self.inner.is_accepting()

    def is_finished(self) -> bool:
        return self.phase == _ANSWER and self.inner.is_finished()

    def fork(self) -> ReasoningMatcher:
        inner = self.inner.fork() if self.inner is not None else None
        return ReasoningMatcher(self.compiled, self.phase, self.pos, self.used, inner, list(self.history))

    def rollback(self, n: int = 1) -> None:
        if n > len(self.history):
            raise ValueError(f"cannot roll back {n} tokens: only {len(self.history)} were consumed")
        for _ in range(n):
            step = self.history.pop()
            if step.inner:
                self.inner.rollback(1)
                continue
            if step.phase != _ANSWER:
                self.inner = None
            self.phase, self.pos, self.used = step.phase, step.pos, step.used


def reasoning_then(
    constraint: Constraint,
    *,
    open: str = "<think>",
    close: str = "</think>",
    max_reasoning_tokens: int | None = DEFAULT_MAX_REASONING_TOKENS,
) -> ReasoningThen:
    """Free reasoning between `open` and `close`, then `constraint` for the answer (CRANE).

    After `max_reasoning_tokens` reasoning tokens (None: no cap) only `close` may follow.
    Split the answer off the output with `split_reasoning`.

    Example:
        >>> import guide
        >>> c = guide.reasoning_then(guide.regex(r"\\d+"), max_reasoning_tokens=64)
    """
    return ReasoningThen(constraint, open=open, close=close, max_reasoning_tokens=max_reasoning_tokens)


def split_reasoning(text: str, *, open: str = "<think>", close: str = "</think>") -> tuple[str, str]:
    """(reasoning, answer) of an output of `reasoning_then`; the answer is what follows the first `close`."""
    head, sep, answer = text.partition(close)
    if not sep:
        raise GrammarError(f"no {close!r} in the output, so it holds no answer: {text[:80]!r}")
    return head.removeprefix(open), answer


@dataclass(frozen=True)
class Decoupled:
    """The two passes of `decoupled`: the free draft and the constrained answer."""

    draft: str
    answer: str


REFORMAT_INSTRUCTION = "Here is a draft answer:\n{draft}\n\nWrite the final answer to the question in the required format."


def decoupled(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str | Sequence[str],
    constraint: Constraint | Sequence[Constraint],
    *,
    max_draft_tokens: int = DEFAULT_MAX_REASONING_TOKENS,
    max_new_tokens: int = 128,
    instruction: str = REFORMAT_INSTRUCTION,
    **generate_kwargs: Any,
) -> Decoupled | list[Decoupled]:
    """Solve freely, then reformat: an unconstrained draft, then `constraint` on a second pass.

    The second prompt is `prompt` followed by `instruction` (with `{draft}` filled in); both passes
    use the chat template when the tokenizer has one. A list of prompts (and optionally one
    constraint per prompt) runs as a batch and gives a list. Extra keyword arguments go to
    `guide.generate` for both passes (e.g. `allow_incomplete=True`).
    """
    from .generate import generate

    if "{draft}" not in instruction:
        raise ValueError("`instruction` has to contain '{draft}', where the first pass's text goes")
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    drafts = generate(model, tokenizer, prompts, None, max_new_tokens=max_draft_tokens, **generate_kwargs)
    second = [f"{p}\n\n{instruction.format(draft=d.strip())}" for p, d in zip(prompts, drafts)]
    answers = generate(model, tokenizer, second, constraint, max_new_tokens=max_new_tokens, **generate_kwargs)
    out = [Decoupled(d, a) for d, a in zip(drafts, answers)]
    return out[0] if isinstance(prompt, str) else out


__all__ = ["Decoupled", "ReasoningThen", "decoupled", "reasoning_then", "split_reasoning"]
