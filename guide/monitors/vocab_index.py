"""Per-vocabulary lookup tables that turn a set of allowed names into a token mask.

Built once per vocabulary (cached by fingerprint) so that a trigger costs a bounded loop over
the candidate names, never a loop over the vocabulary: "tokens equal to this prefix" is a dict
lookup, "tokens that finish this name and go on with a break character" is another, and
"tokens that start with these bytes" is a range of the sorted token list.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Iterable

import numpy as np

from ..bitmask import bits_from_ids, pack_bool
from ..vocab import Vocabulary

#: Whitespace a monitor may skip before a name where the language allows it (after `=`, `,`, `(`).
WHITESPACE = b" \t\r\n"
_HEAD = re.compile(rb"[A-Za-z0-9_\x80-\xff]*")


def is_ident_byte(b: int) -> bool:
    """Bytes that can continue a Python identifier (non-ASCII bytes count: they may spell a letter)."""
    return b >= 0x80 or b == 0x5F or 0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A


def is_ident_start_byte(b: int) -> bool:
    return is_ident_byte(b) and not 0x30 <= b <= 0x39


def _closes_early(text: bytes, quote: int) -> bool:
    """Whether `text`, read from bracket depth 0 (inside a string opened by `quote`, when not 0),
    closes a bracket it did not open before any top-level comma or comment."""
    depth = 0
    for b in text:
        if quote:
            if b == quote:
                quote = 0
        elif b in (0x22, 0x27):
            quote = b
        elif b == 0x23:  # `#`: the rest of the line is a comment
            return False
        elif b in (0x28, 0x5B, 0x7B):
            depth += 1
        elif b in (0x29, 0x5D, 0x7D):
            depth -= 1
            if depth < 0:
                return True
        elif b == 0x2C and depth == 0:
            return False
    return False


def _successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string that starts with `prefix`."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes((trimmed[-1] + 1,))


class TokenTable:
    """Lookups over one view of the token bytes (as they are, or with leading whitespace removed)."""

    def __init__(self, texts: list[bytes], ids: list[int]) -> None:
        exact: dict[bytes, list[int]] = {}
        head_break: dict[bytes, list[int]] = {}
        for text, i in zip(texts, ids):
            exact.setdefault(text, []).append(i)
            head = _HEAD.match(text).group()  # type: ignore[union-attr]
            if len(head) < len(text):  # the token goes on past its identifier with a break character
                head_break.setdefault(head, []).append(i)
        self.exact = {k: np.asarray(v, dtype=np.int64) for k, v in exact.items()}
        self.head_break = {k: np.asarray(v, dtype=np.int64) for k, v in head_break.items()}
        order = sorted(range(len(texts)), key=texts.__getitem__)
        self.sorted_texts = [texts[k] for k in order]
        self.sorted_ids = np.asarray([ids[k] for k in order], dtype=np.int64)

    def starting_with(self, prefix: bytes) -> np.ndarray:
        """Ids of the tokens whose bytes start with `prefix` (one bisection, no scan)."""
        lo = bisect.bisect_left(self.sorted_texts, prefix)
        nxt = _successor(prefix)
        hi = len(self.sorted_texts) if nxt is None else bisect.bisect_left(self.sorted_texts, nxt)
        return self.sorted_ids[lo:hi]


class VocabIndex:
    """Everything a monitor needs per vocabulary; immutable once built."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        width = vocab.model_width
        self.width = width
        usable = [i for i, t in enumerate(vocab.tokens) if t and i not in vocab.special_ids]
        texts = [vocab.tokens[i] for i in usable]
        self.raw = TokenTable(texts, usable)
        stripped = [t.lstrip(WHITESPACE) for t in texts]
        keep = [k for k, s in enumerate(stripped) if s]
        self.stripped = TokenTable([stripped[k] for k in keep], [usable[k] for k in keep])
        self.whitespace_ids = np.asarray([usable[k] for k, s in enumerate(stripped) if not s], dtype=np.int64)
        self.eos_ids = np.asarray(sorted(vocab.eos_ids), dtype=np.int64)
        ordinary = np.zeros(width, dtype=bool)
        ordinary[np.asarray(usable, dtype=np.int64)] = True
        self.ordinary = ordinary
        # Tokens whose first non-blank byte cannot start a name (operators, digits, quotes, ...).
        nonident = np.zeros(width, dtype=bool)
        ids = [usable[k] for k in keep if not is_ident_start_byte(stripped[k][0])]
        nonident[np.asarray(ids, dtype=np.int64)] = True
        self.nonident_start = nonident
        everything = ordinary.copy()
        everything[self.eos_ids] = True
        self.wait_mask = pack_bool(everything)
        self.eos_mask = bits_from_ids(self.eos_ids, width)
        # Per open quote (none, `"`, `'`): tokens that close one more bracket than they open
        # before any top-level comma, i.e. what a close guard at depth 0 forbids.
        self.closes_early: dict[int, np.ndarray] = {}
        self.guard_masks: dict[int, np.ndarray] = {}
        for quote in (0, 0x22, 0x27):
            closes = np.zeros(width, dtype=bool)
            closes[np.asarray([i for i, t in zip(usable, texts) if _closes_early(t, quote)], dtype=np.int64)] = True
            self.closes_early[quote] = closes
            self.guard_masks[quote] = pack_bool(everything & ~closes)

    def name_ids(self, names: Iterable[bytes], *, skip_ws: bool) -> np.ndarray:
        """Ids of tokens that spell a prefix of a name, or a whole name and then its end.

        A name that ends with an identifier character ends where a break character follows
        (`port(` completes `port`); a name that ends otherwise (`port=`) may be followed by
        anything. An empty name (the name is already complete) allows every token that starts
        with a break character.
        """
        table = self.stripped if skip_ws else self.raw
        parts: list[np.ndarray] = []
        for name in names:
            for k in range(1, len(name) + 1):
                hit = table.exact.get(name[:k])
                if hit is not None:
                    parts.append(hit)
            if not name or is_ident_byte(name[-1]):
                hit = (self.raw if not name else table).head_break.get(name)
                if hit is not None:
                    parts.append(hit)
            else:
                parts.append(table.starting_with(name))
        if skip_ws:
            parts.append(self.whitespace_ids)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def starting_with_any(self, prefixes: Iterable[bytes]) -> np.ndarray:
        """Ids of the tokens whose first non-blank bytes start with one of `prefixes`."""
        parts = [self.stripped.starting_with(p) for p in prefixes]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


_INDEXES: dict[str, VocabIndex] = {}
_LOCK = threading.Lock()
_LIMIT = 8


def vocab_index(vocab: Vocabulary) -> VocabIndex:
    """The shared index of `vocab` (built once, ~0.3 s for a 49k-token vocabulary)."""
    key = vocab.fingerprint
    with _LOCK:
        hit = _INDEXES.get(key)
        if hit is not None and hit.vocab.model_width == vocab.model_width:
            return hit
        index = VocabIndex(vocab)
        if len(_INDEXES) >= _LIMIT:
            _INDEXES.pop(next(iter(_INDEXES)))
        _INDEXES[key] = index
        return index
