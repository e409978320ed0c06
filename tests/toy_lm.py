"""An exact toy language model for sampler tests: a next-token table behind the transformers
`forward` signature (`model(input_ids=...)` returns an object with `.logits` `[B, L, V]`)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from types import SimpleNamespace

import torch

from guide.vocab import Vocabulary

EOS = b"<eos>"
BOS = b"<bos>"

Table = Callable[[tuple[int, ...]], dict[int, float]]


def toy_vocabulary(texts: Sequence[bytes]) -> Vocabulary:
    """`texts`, then EOS, then BOS (a special token the prompt starts with)."""
    tokens = [*texts, EOS, BOS]
    return Vocabulary.from_bytes(tokens, eos_ids=[len(texts)], special_ids=[len(texts) + 1])


class ToyLM(torch.nn.Module):
    """`table(prefix)` gives {token: probability} after the token prefix (prompt included)."""

    def __init__(self, table: Table, width: int) -> None:
        super().__init__()
        self.table = table
        self.width = width
        self.calls = 0

    def forward(self, input_ids: torch.Tensor, **_: object) -> SimpleNamespace:
        self.calls += 1
        batch, length = input_ids.shape
        logits = torch.full((batch, length, self.width), -math.inf, dtype=torch.float64)  # exact: no float32 rounding
        for b, row in enumerate(input_ids.tolist()):
            for i in range(length):
                for t, p in self.table(tuple(row[: i + 1])).items():
                    if p > 0:
                        logits[b, i, t] = math.log(p)
        return SimpleNamespace(logits=logits)


def binary_chars_table(vocab: Vocabulary, length: int = 3) -> Table:
    """Uniform over the characters 0/1 (single-character tokens) for `length` characters, then EOS."""
    zero, one = vocab.tokens.index(b"0"), vocab.tokens.index(b"1")
    eos = next(iter(vocab.eos_ids))

    def table(prefix: tuple[int, ...]) -> dict[int, float]:
        generated = len(vocab.decode(t for t in prefix[1:]))
        return {zero: 0.5, one: 0.5} if generated < length else {eos: 1.0}

    return table


def random_table(vocab: Vocabulary, seed: int = 0, sharpness: float = 1.5) -> Table:
    """A fixed pseudo-random conditional per prefix over every non-BOS token (EOS included)."""
    bos = vocab.tokens.index(BOS)
    ids = [i for i in range(vocab.size) if i != bos]

    def table(prefix: tuple[int, ...]) -> dict[int, float]:
        rng = random.Random(f"{seed}/{prefix}")
        logits = [rng.gauss(0.0, sharpness) for _ in ids]
        m = max(logits)
        w = [math.exp(x - m) for x in logits]
        s = sum(w)
        return {t: x / s for t, x in zip(ids, w)}

    return table
