"""Token index: for every state of a byte DFA, the packed bitmask of tokens that keep it alive.

All tokens are walked through all states at once with numpy gathers (tokens sorted by length,
so step j only touches the tokens longer than j); no Python loop over the vocabulary.
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
    """int32 [n_states, W]: bit t of row q is set when token t leads q to a state that tokens can finish.

    A byte DFA state can be alive for bytes yet dead for this vocabulary (SmolLM2 has no token
    for byte 0x04, say); such states are pruned here so that a mask never leads into a dead end.
    EOS bits are set on accepting states; special tokens never.
    """
    table = token_table(vocab)
    flat = dfa.transitions.reshape(-1).astype(np.int64)
    n_states = dfa.n_states
    masks = np.zeros((n_states, bitmask_width(vocab.model_width)), dtype=np.int32)
    allowed = np.zeros((min(_STATE_CHUNK, max(n_states, 1)), vocab.model_width), dtype=bool)
    successors: list[np.ndarray] = []
    for states, cur in _walk_chunks(dfa, table, flat):
        successors.extend(np.unique(row) for row in cur)
        masks[states] = _pack_block(allowed, table, cur != dfa.dead)
    live = _token_live(dfa, successors)
    if not live.all():  # rare: redo the masks without the tokens that lead into token-dead states
        live_or_dead = np.append(live, False)  # index `dead` -> False
        for states, cur in _walk_chunks(dfa, table, flat):
            masks[states] = _pack_block(allowed, table, live_or_dead[cur])
    acc = np.flatnonzero(dfa.accepting & live)
    if acc.size:
        masks[acc] |= bits_from_ids(sorted(vocab.eos_ids), vocab.model_width)[None, :]
    return masks


def _pack_block(scratch: np.ndarray, table: TokenTable, ok: np.ndarray) -> np.ndarray:
    block = scratch[: ok.shape[0]]
    block[:] = False
    block[:, table.ids] = ok
    return pack_bool(block)


def _walk_chunks(dfa: ByteDFA, table: TokenTable, flat: np.ndarray):
    """Yield (states, cur) where cur[i, k] is the state reached from states[i] by token table.ids[k]."""
    for start in range(0, dfa.n_states, _STATE_CHUNK):
        states = np.arange(start, min(start + _STATE_CHUNK, dfa.n_states), dtype=np.int64)
        cur = np.repeat(states[:, None], len(table.ids), axis=1)
        for j, k in enumerate(table.active.tolist()):
            if k == 0:
                break
            cur[:, :k] = flat[cur[:, :k] * 256 + table.data[:k, j]]
        yield states, cur


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
