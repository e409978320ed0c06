"""Token index: for every state of a byte DFA, the packed bitmask of tokens that keep it alive.

All tokens are walked through all states at once with numpy gathers (tokens sorted by length,
so step j only touches the tokens longer than j); no Python loop over the vocabulary.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..bitmask import bitmask_width, pack_bool

if TYPE_CHECKING:
    from ..vocab import Vocabulary
    from .bytedfa import ByteDFA

_STATE_CHUNK = 32


@dataclass(frozen=True, eq=False)
class TokenTable:
    """The text tokens of a vocabulary as a padded byte matrix, longest first."""

    ids: np.ndarray  # int64 [n]
    data: np.ndarray  # uint8 [n, max_len]
    active: np.ndarray  # int64 [max_len]: how many tokens are longer than j


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
        active = (lengths[None, :] > np.arange(max_len)[:, None]).sum(axis=1)
        table = TokenTable(ids=ids_arr, data=data, active=active)
        if len(_tables) >= 8:
            _tables.pop(next(iter(_tables)))
        _tables[vocab.fingerprint] = table
        return table


def state_masks(dfa: ByteDFA, vocab: Vocabulary) -> np.ndarray:
    """int32 [n_states, W]: bit t of row q is set when token t leads q to a live state.

    EOS bits are set on accepting states; special tokens never.
    """
    table = token_table(vocab)
    width = vocab.model_width
    flat = dfa.transitions.reshape(-1).astype(np.int64)
    n_states = dfa.n_states
    masks = np.zeros((n_states, bitmask_width(width)), dtype=np.int32)
    allowed = np.zeros((min(_STATE_CHUNK, max(n_states, 1)), width), dtype=bool)
    for start in range(0, n_states, _STATE_CHUNK):
        states = np.arange(start, min(start + _STATE_CHUNK, n_states), dtype=np.int64)
        cur = np.repeat(states[:, None], len(table.ids), axis=1)
        for j, k in enumerate(table.active.tolist()):
            if k == 0:
                break
            cur[:, :k] = flat[cur[:, :k] * 256 + table.data[:k, j]]
        block = allowed[: len(states)]
        block[:] = False
        block[:, table.ids] = cur != dfa.dead
        masks[start : start + len(states)] = pack_bool(block)
    eos = sorted(vocab.eos_ids)
    if eos:
        acc = np.flatnonzero(dfa.accepting)
        eos_words = np.zeros(masks.shape[1], dtype=np.int64)
        for t in eos:
            eos_words[t // 32] |= 1 << (t % 32)
        masks[acc] |= eos_words.astype(np.uint32).view(np.int32)[None, :]
    return masks
