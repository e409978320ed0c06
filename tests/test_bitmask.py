"""The packed layout (xgrammar / llguidance): numpy helpers, allocation and the public apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from guide.bitmask import (
    allocate_bitmask,
    apply_bitmask,
    bitmask_width,
    bits_from_ids,
    ids_from_bits,
    pack_bool,
    unpack_bool,
)

WIDTHS = [0, 1, 31, 32, 33, 49152, 49159]


@pytest.mark.parametrize(("vocab_size", "words"), [(0, 0), (1, 1), (31, 1), (32, 1), (33, 2), (49152, 1536), (49159, 1537)])
def test_bitmask_width(vocab_size: int, words: int) -> None:
    assert bitmask_width(vocab_size) == words


def test_bitmask_width_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        bitmask_width(-1)
    with pytest.raises(TypeError):
        bitmask_width(3.0)  # type: ignore[arg-type]


def test_layout_is_lsb_first() -> None:
    assert bits_from_ids([0], 64).tolist() == [1, 0]
    assert bits_from_ids([31], 64).tolist() == [-(2**31), 0]  # bit 31 is the sign bit
    assert bits_from_ids([32, 35], 64).tolist() == [0, 0b1001]
    assert bits_from_ids(range(32), 33).tolist() == [-1, 0]


@pytest.mark.parametrize("vocab_size", WIDTHS)
def test_padding_bits_are_zero(vocab_size: int) -> None:
    words = pack_bool(np.ones(vocab_size, dtype=bool))
    assert words.dtype == np.int32 and words.shape == (bitmask_width(vocab_size),)
    assert unpack_bool(words, 32 * words.size).sum() == vocab_size


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(bool, hnp.array_shapes(min_dims=1, max_dims=3, max_side=70)))
def test_pack_unpack_round_trip(allowed: np.ndarray) -> None:
    words = pack_bool(allowed)
    assert words.shape == (*allowed.shape[:-1], bitmask_width(allowed.shape[-1]))
    np.testing.assert_array_equal(unpack_bool(words, allowed.shape[-1]), allowed)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.int32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=6)))
def test_unpack_pack_round_trip(words: np.ndarray) -> None:
    np.testing.assert_array_equal(pack_bool(unpack_bool(words, 32 * words.shape[-1])), words)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 300).flatmap(lambda v: st.tuples(st.just(v), st.sets(st.integers(0, v - 1)))))
def test_ids_round_trip(case: tuple[int, set[int]]) -> None:
    vocab_size, ids = case
    words = bits_from_ids(ids, vocab_size)
    assert words.shape == (bitmask_width(vocab_size),)
    assert ids_from_bits(words, vocab_size).tolist() == sorted(ids)


def test_ids_from_bits_ignores_bits_past_the_vocabulary() -> None:
    assert ids_from_bits(np.array([-1], dtype=np.int32), 3).tolist() == [0, 1, 2]


def test_unpack_handles_big_endian_words() -> None:
    words = bits_from_ids([0, 9, 40], 64)
    np.testing.assert_array_equal(unpack_bool(words.astype(">i4"), 64), unpack_bool(words, 64))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: bits_from_ids([5], 5), ValueError, "outside the vocabulary"),
        (lambda: bits_from_ids([-1], 5), ValueError, "outside the vocabulary"),
        (lambda: bits_from_ids([1.0], 5), TypeError, "integers"),
        (lambda: bits_from_ids(np.zeros((1, 1), dtype=int), 5), ValueError, "one-dimensional"),
        (lambda: unpack_bool(np.zeros(1, dtype=np.int32), 33), ValueError, "at most 32"),
        (lambda: unpack_bool(np.zeros(1, dtype=np.int64), 3), TypeError, "32-bit"),
        (lambda: ids_from_bits(np.zeros((1, 1), dtype=np.int32), 3), ValueError, "one row"),
        (lambda: pack_bool(np.bool_(True)), ValueError, "at least one dimension"),
    ],
)
def test_helpers_reject_bad_input(call, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_allocate_bitmask_allows_everything() -> None:
    mask = allocate_bitmask(3, 49159)
    assert mask.dtype == torch.int32 and mask.shape == (3, 1537)
    assert bool((mask == -1).all())
    with pytest.raises(ValueError, match="rows"):
        allocate_bitmask(-1, 10)


def test_apply_bitmask_masks_padding_columns_and_keeps_allowed_ones() -> None:
    """A 40-token tokenizer inside 50-wide logits: ids 40..49 are padding and always masked."""
    logits = torch.randn(2, 50, dtype=torch.bfloat16)
    original = logits.clone()
    bitmask = np.stack([bits_from_ids([0, 7, 39], 40), bits_from_ids(range(40), 40)])
    apply_bitmask(logits, bitmask)
    allowed = [[0, 7, 39], list(range(40))]
    for r in range(2):
        keep = torch.zeros(50, dtype=torch.bool)
        keep[allowed[r]] = True
        assert torch.equal(logits[r][keep], original[r][keep])
        assert torch.isneginf(logits[r][~keep]).all()


def test_apply_bitmask_vocab_size_and_indices() -> None:
    logits = torch.randn(3, 64)
    original = logits.clone()
    apply_bitmask(logits, allocate_bitmask(3, 64), [0, 2], vocab_size=10)
    assert torch.equal(logits[:, :10], original[:, :10])
    assert torch.isneginf(logits[[0, 2], 10:]).all()
    assert torch.equal(logits[1], original[1])


def test_apply_bitmask_accepts_read_only_numpy_masks() -> None:
    bitmask = bits_from_ids([1], 32)[None, :]
    bitmask.flags.writeable = False
    logits = torch.zeros(1, 32)
    apply_bitmask(logits, bitmask)  # no "non-writable array" warning (warnings are errors here)
    assert torch.isneginf(logits).sum() == 31


def test_apply_bitmask_validates() -> None:
    with pytest.raises(TypeError, match="int32"):
        apply_bitmask(torch.zeros(1, 32), np.zeros((1, 1), dtype=np.int64))
    with pytest.raises(ValueError, match="backend"):
        apply_bitmask(torch.zeros(1, 32), allocate_bitmask(1, 32), backend="cpu")  # type: ignore[arg-type]
