"""Helpers for tests and examples: toy vocabularies and oracles (public, but not a stable API)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from typing import Any

from .constraint import Matcher
from .grammars.bytedfa import ByteDFA
from .vocab import Vocabulary

EOS_TEXT = b"<eos>"


def toy_vocab(extra: Sequence[bytes] = (), *, model_width: int | None = None) -> Vocabulary:
    """All 256 single bytes, then `extra` multi-byte tokens, then one EOS special token."""
    tokens = [bytes([b]) for b in range(256)] + list(extra) + [EOS_TEXT]
    eos = len(tokens) - 1
    return Vocabulary.from_bytes(tokens, eos_ids=[eos], special_ids=[eos], model_width=model_width)


def random_walk(matcher: Matcher, rng: random.Random, *, max_tokens: int = 64, stop_p: float = 0.3) -> tuple[list[int], bool]:
    """Pick uniformly among allowed tokens; returns (tokens, True) once EOS is picked, (tokens, False)
    when `max_tokens` runs out first. EOS, when allowed, is picked with probability `stop_p`."""
    eos = matcher.vocab.eos_ids
    out: list[int] = []
    for _ in range(max_tokens):
        allowed = matcher.allowed_tokens()
        assert allowed, f"dead end after {out!r}"
        text = [t for t in allowed if t not in eos]
        if not text or (len(text) < len(allowed) and rng.random() < stop_p):
            return out, True
        t = rng.choice(text)
        assert matcher.advance(t)
        out.append(t)
    return out, False


def shortest_completion(dfa: ByteDFA, state: int) -> bytes:
    """The shortest bytes leading `state` to acceptance (breadth-first), to check unfinished walks."""
    seen = {state: b""}
    frontier = [state]
    while frontier:
        nxt = []
        for q in frontier:
            if dfa.accepting[q]:
                return seen[q]
            for b in range(256):
                r = int(dfa.transitions[q, b])
                if r != dfa.dead and r not in seen:
                    seen[r] = seen[q] + bytes([b])
                    nxt.append(r)
        frontier = nxt
    raise AssertionError(f"state {state} cannot reach acceptance")


def serialize_in_grammar_order(compiled: Any, value: Any, *, max_steps: int = 20_000) -> str | None:
    """Compact JSON text of `value` with each object's keys in an order the compiled grammar
    (a `GrammarCompiled`) accepts, found by search with backtracking; None when no order is
    accepted (or `max_steps` lexer calls run out). A test oracle for `property_order="schema"`:
    the grammar fixes the key order, which merges of allOf/oneOf make hard to predict."""
    steps = [0]

    def eat(state, text: str):
        steps[0] += 1
        if steps[0] > max_steps:
            raise _OutOfSteps
        return compiled.consume(state[0], state[1], text.encode("utf-8"))

    def emit(state, v) -> Iterator[tuple[Any, str]]:
        if isinstance(v, dict):
            opened = eat(state, "{")
            if opened is not None:
                yield from members(opened, v, list(v), True, "{")
        elif isinstance(v, list):
            opened = eat(state, "[")
            if opened is not None:
                yield from items(opened, v, 0, "[")
        else:
            text = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
            out = eat(state, text)
            if out is not None:
                yield out, text

    def members(state, obj, left, first, text) -> Iterator[tuple[Any, str]]:
        if not left:
            out = eat(state, "}")
            if out is not None:
                yield out, text + "}"
            return
        for k in left:
            head = ("" if first else ",") + json.dumps(k, ensure_ascii=False) + ":"
            after_key = eat(state, head)
            if after_key is None:
                continue
            rest = [x for x in left if x != k]
            for after_value, vtext in emit(after_key, obj[k]):
                yield from members(after_value, obj, rest, False, text + head + vtext)

    def items(state, arr, i, text) -> Iterator[tuple[Any, str]]:
        if i == len(arr):
            out = eat(state, "]")
            if out is not None:
                yield out, text + "]"
            return
        sep = "" if i == 0 else ","
        start = eat(state, sep) if sep else state
        if start is None:
            return
        for after, vtext in emit(start, arr[i]):
            yield from items(after, arr, i + 1, text + sep + vtext)

    try:
        for (stack, q), text in emit((compiled.initial_stack(), compiled.lexer.initial), value):
            if compiled.end_ok(stack, q):
                return text
    except _OutOfSteps:
        return None
    return None


class _OutOfSteps(Exception):
    pass
