"""Token index: for every state of a byte DFA, the packed bitmask of tokens that keep it alive.

Tokens are walked through the DFA with numpy gathers, never a Python loop over the vocabulary:
per state, only the tokens whose first byte the state accepts are gathered (tokens are grouped
by first byte), and each further byte drops the tokens that died, so the work follows the
survivors rather than states x vocabulary.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..bitmask import bitmask_width, bits_from_ids, pack_bool

if TYPE_CHECKING:
    from ..vocab import Vocabulary
    from .bytedfa import ByteDFA

@dataclass(frozen=True, eq=False)
class TokenTable:
    """The text tokens of a vocabulary as a padded byte matrix, longest first."""

    ids: np.ndarray  # int64 [n]
    data: np.ndarray  # uint8 [n, max_len]
    lengths: np.ndarray  # int64 [n]
    by_first: np.ndarray  # int64 [n]: token rows ordered by first byte
    first_offsets: np.ndarray  # int64 [257]: by_first[first_offsets[b]:first_offsets[b+1]] start with b
    trie: ByteTrie


@dataclass(frozen=True, eq=False)
class ByteTrie:
    """The tokens as a trie of bytes, level by level (level 0 is the root alone): built once per
    vocabulary, so that a grammar's trie of byte classes is a quotient of it (one `np.unique` per
    level over trie nodes) instead of a pass over every byte of every token."""

    parent: list[np.ndarray]  # level j >= 1: node -> its parent at level j - 1
    byte: list[np.ndarray]  # level j >= 1: node -> the byte that leads to it
    end: np.ndarray  # table row -> its node at level lengths[row]


def _byte_trie(data: np.ndarray, lengths: np.ndarray) -> ByteTrie:
    node = np.zeros(len(lengths), dtype=np.int64)
    parent: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    byte: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    for j in range(data.shape[1]):
        live = int(np.count_nonzero(lengths > j))  # rows are longest first: the live ones lead
        key = node[:live] * 256 + data[:live, j]
        uniq, inv = np.unique(key, return_inverse=True)
        node[:live] = inv.reshape(-1)
        parent.append(uniq >> 8)
        byte.append(uniq & 255)
    return ByteTrie(parent=parent, byte=byte, end=node)


_tables: dict[str, TokenTable] = {}
_tables_lock = threading.Lock()


def token_table(vocab: Vocabulary) -> TokenTable:
    """Built once per vocabulary; special and empty tokens are left out (they never match text)."""
    with _tables_lock:
        table = _tables.get(vocab.fingerprint)
        if table is not None:
            return table
        ids = [i for i, tok in enumerate(vocab.tokens) if tok and i not in vocab.special_ids]
        lengths = np.array([len(vocab.tokens[i]) for i in ids], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")
        ids_arr = np.asarray(ids, dtype=np.int64)[order]
        lengths = lengths[order]
        max_len = int(lengths[0]) if len(lengths) else 0
        data = np.zeros((len(ids_arr), max_len), dtype=np.uint8)
        flat = np.frombuffer(b"".join(vocab.tokens[i] for i in ids_arr.tolist()), dtype=np.uint8)
        rows = np.repeat(np.arange(len(ids_arr)), lengths)
        starts = np.cumsum(lengths) - lengths
        cols = np.arange(len(flat)) - np.repeat(starts, lengths)
        data[rows, cols] = flat
        first = data[:, 0] if max_len else np.zeros(0, dtype=np.uint8)
        by_first = np.argsort(first, kind="stable")
        first_offsets = np.searchsorted(first[by_first], np.arange(257)).astype(np.int64)
        table = TokenTable(
            ids=ids_arr, data=data, lengths=lengths, by_first=by_first, first_offsets=first_offsets,
            trie=_byte_trie(data, lengths),
        )
        if len(_tables) >= 8:
            _tables.pop(next(iter(_tables)))
        _tables[vocab.fingerprint] = table
        return table


def state_masks(dfa: ByteDFA, vocab: Vocabulary) -> np.ndarray:
    """int32 [n_states, W]: bit t of row q is set when token t leads q to a state that tokens can finish.

    A byte DFA state can be alive for bytes yet dead for this vocabulary (SmolLM2 has no token
    for byte 0x04, say); such states are pruned here so that a mask never leads into a dead end.
    EOS bits are set on accepting states; special tokens never.
    """
    table = token_table(vocab)
    walks = walk_states(dfa, table)
    live = _token_live(dfa, [np.unique(end) for _, end in walks])
    masks = np.zeros((dfa.n_states, bitmask_width(vocab.model_width)), dtype=np.int32)
    row = np.zeros(vocab.model_width, dtype=bool)
    for q, (rows, end) in enumerate(walks):
        row[:] = False
        row[table.ids[rows[live[end]]]] = True
        masks[q] = pack_bool(row)
    acc = np.flatnonzero(dfa.accepting & live)
    if acc.size:
        masks[acc] |= bits_from_ids(sorted(vocab.eos_ids), vocab.model_width)[None, :]
    return masks


def walk_states(dfa: ByteDFA, table: TokenTable) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per DFA state q: (token rows of `table` that keep q alive, the state each one ends in)."""
    trans = dfa.transitions.astype(np.int64)
    flat = trans.reshape(-1)
    dead = dfa.dead
    offsets = table.first_offsets
    out = []
    for q in range(dfa.n_states):
        firsts = np.flatnonzero(trans[q] != dead)
        counts = offsets[firsts + 1] - offsets[firsts]
        total = int(counts.sum())
        if total == 0:
            out.append((np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)))
            continue
        # positions offsets[b] .. offsets[b+1] for every accepted first byte b, concatenated
        shift = np.repeat(offsets[firsts] - (np.cumsum(counts) - counts), counts)
        rows = table.by_first[np.arange(total) + shift]
        end = trans[q, table.data[rows, 0]]
        j = 1
        while rows.size:
            longer = np.flatnonzero(table.lengths[rows] > j)
            if not longer.size:
                break
            end[longer] = flat[end[longer] * 256 + table.data[rows[longer], j]]
            alive = end != dead
            rows, end = rows[alive], end[alive]
            j += 1
        out.append((rows, end))
    return out


def _token_live(dfa: ByteDFA, successors: list[np.ndarray]) -> np.ndarray:
    """States from which some token sequence reaches an accepting state (backward fixpoint)."""
    live = dfa.accepting.copy()
    changed = True
    while changed:
        changed = False
        for q in np.flatnonzero(~live).tolist():
            nxt = successors[q]
            nxt = nxt[nxt != dfa.dead]
            if nxt.size and live[nxt].any():
                live[q] = True
                changed = True
    return live
