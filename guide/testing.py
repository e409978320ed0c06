"""Helpers for tests and examples: toy vocabularies and oracles (public, but not a stable API)."""

from __future__ import annotations

import random
from collections.abc import Sequence

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
