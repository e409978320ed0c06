"""The Triton backend: one fused kernel over a ``rows x cdiv(V, BLOCK)`` grid, for CUDA logits.

Each program loads the ``BLOCK / 32`` mask words of its column block once, expands them into bits
with a shift-and-and, and stores -inf where a bit is 0 or the column lies past the mask; a
selected-rows launch maps program id -> row through `rows`. On CPU it runs only under Triton's
interpreter (``TRITON_INTERPRET=1`` set before this module is first imported), which the tests use.
"""

from __future__ import annotations

import torch

from ..errors import MissingDependencyError

try:
    import triton
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction
except ImportError as exc:
    raise MissingDependencyError(
        "the triton bitmask backend needs triton: pip install 'guide-decoding[kernels]'"
    ) from exc

BLOCK = 4096


@triton.jit
def _apply_bitmask_kernel(
    logits_ptr,
    bitmask_ptr,
    rows_ptr,
    n_cols,
    limit,
    n_words,
    logits_row_stride,
    logits_col_stride,
    bitmask_row_stride,
    HAS_ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    if HAS_ROWS:
        row = tl.load(rows_ptr + tl.program_id(0)).to(tl.int64)
    else:
        row = tl.program_id(0).to(tl.int64)
    block = tl.program_id(1)
    words_at = block * (BLOCK // 32) + tl.arange(0, BLOCK // 32)
    words_ptr = bitmask_ptr + row * bitmask_row_stride + words_at
    words = tl.load(words_ptr, mask=words_at < n_words, other=0)
    bits = tl.reshape((words[:, None] >> tl.arange(0, 32)[None, :]) & 1, (BLOCK,))
    cols = block * BLOCK + tl.arange(0, BLOCK)
    forbidden = (bits == 0) | (cols >= limit)
    neg_inf = tl.full((BLOCK,), float("-inf"), logits_ptr.dtype.element_ty)
    out_ptr = logits_ptr + row * logits_row_stride + cols * logits_col_stride
    tl.store(out_ptr, neg_inf, mask=forbidden & (cols < n_cols))


def apply_bitmask(
    logits: torch.Tensor, bitmask: torch.Tensor, rows: torch.Tensor | None, limit: int
) -> None:
    """Mask `logits` [B, V] in place with `bitmask` [B, W]; arguments already validated.

    `rows` (int64, on the logits' device) selects rows of both; columns >= `limit` become -inf.
    """
    if logits.device.type == "cpu" and not isinstance(_apply_bitmask_kernel, InterpretedFunction):
        raise ValueError(
            "the triton backend runs on CUDA tensors, but the logits are on the CPU; use "
            "backend='torch' (or, for tests, set TRITON_INTERPRET=1 before "
            "guide.kernels.triton_kernel is first imported)"
        )
    n_rows = logits.shape[0] if rows is None else rows.numel()
    n_cols = logits.shape[1]
    if n_rows == 0 or n_cols == 0:
        return
    bitmask = bitmask.contiguous()
    grid = (n_rows, triton.cdiv(n_cols, BLOCK))
    _apply_bitmask_kernel[grid](
        logits,
        bitmask,
        rows,
        n_cols,
        limit,
        bitmask.shape[1],
        logits.stride(0),
        logits.stride(1),
        bitmask.stride(0),
        HAS_ROWS=rows is not None,
        BLOCK=BLOCK,
    )
