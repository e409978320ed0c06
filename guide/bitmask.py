"""Packed int32 token bitmasks, the layout xgrammar and llguidance share.

Row r, word w, bit b (LSB first) set  <=>  token 32*w + b is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def bitmask_width(vocab_size: int) -> int:
    return (vocab_size + 31) // 32


def allocate_bitmask(rows: int, vocab_size: int, *, device: Any = None) -> Any:
    import torch

    return torch.full((rows, bitmask_width(vocab_size)), -1, dtype=torch.int32, device=device)


def pack_bool(allowed: np.ndarray) -> np.ndarray:
    allowed = np.asarray(allowed, dtype=bool)
    v = allowed.shape[-1]
    pad = bitmask_width(v) * 32 - v
    if pad:
        allowed = np.concatenate([allowed, np.zeros((*allowed.shape[:-1], pad), dtype=bool)], axis=-1)
    return np.ascontiguousarray(np.packbits(allowed, axis=-1, bitorder="little")).view("<i4")


def unpack_bool(bitmask: np.ndarray, vocab_size: int) -> np.ndarray:
    words = np.ascontiguousarray(bitmask, dtype="<i4")
    return np.unpackbits(words.view(np.uint8), axis=-1, bitorder="little")[..., :vocab_size].astype(bool)


def bits_from_ids(ids: Iterable[int], vocab_size: int) -> np.ndarray:
    allowed = np.zeros(vocab_size, dtype=bool)
    allowed[np.fromiter(ids, dtype=np.int64)] = True
    return pack_bool(allowed)


def ids_from_bits(words: np.ndarray, vocab_size: int) -> np.ndarray:
    return np.flatnonzero(unpack_bool(words, vocab_size))


def apply_bitmask(logits: Any, bitmask: Any, indices: Any = None, *, vocab_size: int | None = None) -> None:
    import torch

    if isinstance(bitmask, np.ndarray):
        bitmask = torch.from_numpy(bitmask)
    v = logits.shape[-1]
    allowed = torch.from_numpy(unpack_bool(bitmask.cpu().numpy(), bitmask.shape[-1] * 32)).to(logits.device)
    full = torch.zeros((logits.shape[0], v), dtype=torch.bool, device=logits.device)
    n = min(v, allowed.shape[-1], vocab_size if vocab_size is not None else v)
    full[:, :n] = allowed[:, :n]
    rows = slice(None) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    logits[rows] = logits[rows].masked_fill(~full[rows], float("-inf"))
