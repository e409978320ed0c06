"""Packed int32 token bitmasks, the layout xgrammar, llguidance, vLLM and SGLang share.

A mask is int32 ``[rows, W]`` with ``W = ceil(V / 32)``: token ``t`` is allowed in row ``r`` iff
bit ``t % 32`` (LSB first) of ``bitmask[r, t // 32]`` is 1, so a full row is -1 in every word and
masks pass between these libraries unchanged. The numpy helpers let constraint engines build
masks ahead of time without torch; torch is imported only by the functions that return or take
tensors, so that `import guide` stays light.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from .kernels import Backend


def bitmask_width(vocab_size: int) -> int:
    """Words per row, ``ceil(vocab_size / 32)``."""
    vocab_size = operator.index(vocab_size)
    if vocab_size < 0:
        raise ValueError(f"vocab_size must be >= 0, got {vocab_size}")
    return (vocab_size + 31) // 32


def allocate_bitmask(
    rows: int, vocab_size: int, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """A full (every token allowed) int32 mask ``[rows, ceil(vocab_size / 32)]`` on `device`.

    Allocate it at the model's logits width, not the tokenizer's, so that padding ids are covered.
    """
    import torch

    rows = operator.index(rows)
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    return torch.full((rows, bitmask_width(vocab_size)), -1, dtype=torch.int32, device=device)


def pack_bool(allowed: np.ndarray) -> np.ndarray:
    """bool ``[..., V]`` -> int32 ``[..., ceil(V / 32)]``; the padding bits past V are 0."""
    allowed = np.asarray(allowed, dtype=bool)
    if allowed.ndim == 0:
        raise ValueError("pack_bool needs an array of at least one dimension [..., V]")
    vocab_size = allowed.shape[-1]
    packed = np.zeros((*allowed.shape[:-1], 4 * bitmask_width(vocab_size)), dtype=np.uint8)
    packed[..., : (vocab_size + 7) // 8] = np.packbits(allowed, axis=-1, bitorder="little")
    return packed.view("<i4").astype(np.int32, copy=False)


def unpack_bool(bitmask: np.ndarray, vocab_size: int) -> np.ndarray:
    """int32 ``[..., W]`` -> bool ``[..., vocab_size]``, the inverse of `pack_bool`."""
    words = np.asarray(bitmask)
    if words.dtype.kind not in "iu" or words.dtype.itemsize != 4:
        raise TypeError(f"a bitmask holds 32-bit integer words, got dtype {words.dtype}")
    if words.ndim == 0:
        raise ValueError("a bitmask needs at least one dimension [..., W]")
    vocab_size = operator.index(vocab_size)
    if not 0 <= vocab_size <= 32 * words.shape[-1]:
        raise ValueError(
            f"vocab_size {vocab_size} does not fit a bitmask of {words.shape[-1]} words "
            f"(at most {32 * words.shape[-1]} tokens)"
        )
    # Explicit little-endian words, so that byte k of a word holds bits 8k..8k+7 on any machine.
    little = np.ascontiguousarray(words, dtype=words.dtype.newbyteorder("<"))
    bits = np.unpackbits(little.view(np.uint8), axis=-1, count=vocab_size, bitorder="little")
    return bits.view(np.bool_)


def bits_from_ids(ids: Iterable[int], vocab_size: int) -> np.ndarray:
    """int32 ``[ceil(vocab_size / 32)]`` with exactly the bits of `ids` set."""
    array = np.asarray(ids if isinstance(ids, (np.ndarray, Sequence)) else list(ids))
    if array.ndim != 1:
        raise ValueError(f"ids must be one-dimensional, got shape {array.shape}")
    if array.size and array.dtype.kind not in "iu":
        raise TypeError(f"ids must be integers, got dtype {array.dtype}")
    bad = array[(array < 0) | (array >= vocab_size)]
    if bad.size:
        raise ValueError(f"token id {bad[0]} is outside the vocabulary [0, {vocab_size})")
    allowed = np.zeros(vocab_size, dtype=bool)
    allowed[array.astype(np.intp, copy=False)] = True
    return pack_bool(allowed)


def ids_from_bits(words: np.ndarray, vocab_size: int) -> np.ndarray:
    """The allowed token ids of one mask row int32 ``[W]``, sorted ascending."""
    words = np.asarray(words)
    if words.ndim != 1:
        raise ValueError(f"ids_from_bits takes one row [W], got shape {words.shape}")
    return np.flatnonzero(unpack_bool(words, vocab_size))


def apply_bitmask(
    logits: torch.Tensor,
    bitmask: torch.Tensor | np.ndarray,
    indices: Sequence[int] | torch.Tensor | np.ndarray | None = None,
    *,
    vocab_size: int | None = None,
    backend: Backend = "auto",
) -> None:
    """Write -inf into `logits` wherever `bitmask` forbids the token; in place, returns None.

    Args:
        logits: ``[B, V]`` (or ``[V]``) float32, float16 or bfloat16, modified in place.
        bitmask: int32 ``[B, W]`` (or ``[W]``), a torch tensor on the logits' device or a numpy
            array for CPU logits (shared, not copied). One row per logits row.
        indices: rows to mask (of both tensors); the other rows are left untouched.
        vocab_size: the real vocabulary size when the logits or the mask are padded.
        backend: "auto" (Triton for CUDA logits when installed, else torch), "torch" or "triton".

    Semantics, with ``limit = min(32 * W, vocab_size or inf)``::

        for r in (indices if indices is not None else range(B)):
            for t in range(V):
                if t >= limit or (bitmask[r, t // 32] >> (t % 32)) & 1 == 0:
                    logits[r, t] = -inf

    Unlike xgrammar, columns past the mask are masked rather than left free: a model's logits are
    often wider than its tokenizer, and those padding ids must never be sampled.

    Raises:
        TypeError: wrong tensor types or dtypes.
        ValueError: shapes, devices, indices, vocab_size or backend that do not fit, or logits
            that require grad.
    """
    from .kernels import apply_bitmask_inplace

    apply_bitmask_inplace(logits, bitmask, indices, vocab_size=vocab_size, backend=backend)


__all__ = [
    "allocate_bitmask",
    "apply_bitmask",
    "bitmask_width",
    "bits_from_ids",
    "ids_from_bits",
    "pack_bool",
    "unpack_bool",
]
