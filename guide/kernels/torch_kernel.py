"""The torch backend: runs on any device, branch-free, with a numpy fast path for CPU tensors.

Each mask bit becomes a lane of the logits' width that is all ones (allowed) or all zeros
(forbidden), and the lanes are blended into the logits' bit patterns::

    x = ((x ^ NEG_INF) & lane) ^ NEG_INF

which keeps allowed logits bit for bit (NaN payloads, -0.0) and makes forbidden ones -inf.

Why not ``masked_fill_`` / ``torch.where`` on an unpacked bool mask: on CPU both branch per
element, so a mask without a regular pattern costs them about 250 µs per 49k-token row, against
about 30 µs here for every mask (docs/kernels.md). On CPU the same arithmetic runs in numpy on
views of the tensors (``np.unpackbits`` for the lanes): numpy's per-call overhead and its
bitwise loops are cheaper than torch's at these sizes, about 25 % off a single row.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import torch

_INT_VIEW = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}
_NUMPY_INT = {torch.int32: np.int32, torch.int16: np.int16}
# The numpy path reads the int32 words as little-endian bytes; elsewhere the torch path runs.
_NUMPY_CPU = sys.byteorder == "little"
# Rows per numpy pass are capped so that the lanes and the logits of a pass stay in the CPU's
# caches across its five sweeps: a third off 64 rows of 49k float32 logits.
_CHUNK_ELEMENTS = 1 << 20


def apply_bitmask(
    logits: torch.Tensor, bitmask: torch.Tensor, rows: torch.Tensor | None, limit: int
) -> None:
    """Mask `logits` [B, V] in place with `bitmask` [B, W]; arguments already validated.

    `rows` (int64, on the logits' device) selects rows of both; columns >= `limit` become -inf.
    """
    if rows is not None:
        selected = logits.index_select(0, rows)
        apply_bitmask(selected, bitmask.index_select(0, rows), None, limit)
        logits.index_copy_(0, rows, selected)
        return
    n = min(limit, logits.shape[1])
    if n < logits.shape[1]:
        logits[:, n:] = float("-inf")
    if n == 0:
        return
    if logits.device.type == "cpu" and _NUMPY_CPU:
        words = bitmask.numpy()
        step = max(1, _CHUNK_ELEMENTS // n)
        for start in range(0, logits.shape[0], step):
            _blend_numpy(logits[start : start + step, :n], words[start : start + step])
    else:
        _blend_torch(logits[:, :n], bitmask)


def _blend_torch(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    n = logits.shape[1]
    int_dtype = _INT_VIEW[logits.dtype]
    lanes = (bitmask.unsqueeze(-1) << _shifts(bitmask.device)).flatten(1)  # bit b -> sign bit
    lanes >>= 31  # arithmetic: sign bit -> all 32 bits
    lanes = lanes[:, :n].to(int_dtype)
    bits = logits.view(int_dtype)
    neg_inf = _neg_inf_bits(logits.dtype)
    bits.bitwise_xor_(neg_inf).bitwise_and_(lanes).bitwise_xor_(neg_inf)


def _blend_numpy(logits: torch.Tensor, words: np.ndarray) -> None:
    int_dtype = _INT_VIEW[logits.dtype]
    little = np.ascontiguousarray(words).view(np.uint8)
    bits = np.unpackbits(little, axis=-1, count=logits.shape[1], bitorder="little").view(np.int8)
    np.negative(bits, out=bits)  # 1 -> -1, which sign-extends to all ones
    lanes = bits.astype(_NUMPY_INT[int_dtype])
    x = logits.view(int_dtype).numpy()  # shares memory with the logits
    neg_inf = _neg_inf_bits(logits.dtype)
    np.bitwise_xor(x, neg_inf, out=x)
    np.bitwise_and(x, lanes, out=x)
    np.bitwise_xor(x, neg_inf, out=x)


@functools.cache
def _shifts(device: torch.device) -> torch.Tensor:
    """``31 - b`` for b in 0..31: the left shift that moves bit b into the sign bit."""
    return 31 - torch.arange(32, dtype=torch.int32, device=device)


@functools.cache
def _neg_inf_bits(dtype: torch.dtype) -> int:
    """The bit pattern of -inf in `dtype`, as a signed integer of the same width."""
    return int(torch.tensor(float("-inf"), dtype=dtype).view(_INT_VIEW[dtype]).item())
