"""Apply a packed token bitmask to logits in place, with one module per backend.

`apply_bitmask_inplace` validates its arguments once and hands plain 2-D tensors to a backend:

* ``torch_kernel``: any device, branch-free bit arithmetic; the CPU path and the fallback.
* ``triton_kernel``: one fused Triton kernel for CUDA logits (optional extra ``kernels``).

Nothing here imports torch or triton until a function is called, so that `import guide` stays
light and triton stays optional.
"""

from __future__ import annotations

import functools
import importlib.util
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from ..errors import MissingDependencyError

if TYPE_CHECKING:
    import torch

Backend = Literal["auto", "torch", "triton"]
_BACKENDS = ("auto", "torch", "triton")


def available_backends() -> list[str]:
    """Backends installed here: "torch" always, "triton" when triton is importable.

    Triton runs on CUDA tensors only (or on CPU under ``TRITON_INTERPRET=1``, for tests).
    """
    return ["torch"] + (["triton"] if importlib.util.find_spec("triton") is not None else [])


def apply_bitmask_inplace(
    logits: torch.Tensor,
    bitmask: torch.Tensor | np.ndarray,
    indices: Sequence[int] | torch.Tensor | np.ndarray | None = None,
    *,
    vocab_size: int | None = None,
    backend: Backend = "auto",
) -> None:
    """Set ``logits[r, t] = -inf`` wherever bit t of ``bitmask[r]`` is 0; see `guide.apply_bitmask`.

    With ``limit = min(32 * W, vocab_size or inf)``::

        for r in (indices if indices is not None else range(B)):
            for t in range(V):
                if t >= limit or (bitmask[r, t // 32] >> (t % 32)) & 1 == 0:
                    logits[r, t] = -inf

    Without `indices` the mask needs one row per logits row; with them, every index must be a row
    of both (as in xgrammar). "auto" picks Triton for CUDA logits when triton imports, else torch.
    """
    import torch

    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"logits must be float32, float16 or bfloat16, got {logits.dtype}")
    if logits.requires_grad:
        raise ValueError(
            "logits require grad, but the bitmask is written in place behind autograd's back; "
            "pass logits.detach() (or a tensor computed under torch.no_grad())"
        )
    bitmask = _as_tensor(bitmask)
    if logits.ndim not in (1, 2) or bitmask.ndim != logits.ndim:
        raise ValueError(
            f"expected logits [B, V] with bitmask [B, W] (or [V] with [W]), "
            f"got logits {tuple(logits.shape)} and bitmask {tuple(bitmask.shape)}"
        )
    if bitmask.device != logits.device:
        raise ValueError(
            f"bitmask is on {bitmask.device} but logits are on {logits.device}; "
            f"copy it first: bitmask.to(logits.device, non_blocking=True)"
        )
    if logits.ndim == 1:
        logits, bitmask = logits.unsqueeze(0), bitmask.unsqueeze(0)
    rows = _rows(indices, logits, bitmask)
    limit = 32 * bitmask.shape[1]
    if vocab_size is not None:
        vocab_size = operator.index(vocab_size)
        if vocab_size < 0:
            raise ValueError(f"vocab_size must be >= 0, got {vocab_size}")
        limit = min(limit, vocab_size)
    if rows is not None and rows.numel() == 0:
        return
    on_cuda = logits.device.type == "cuda"
    if backend == "triton" or (backend == "auto" and on_cuda and _triton_imports()):
        from . import triton_kernel

        triton_kernel.apply_bitmask(logits, bitmask, rows, limit)
    else:
        from . import torch_kernel

        torch_kernel.apply_bitmask(logits, bitmask, rows, limit)


def _as_tensor(bitmask: object) -> torch.Tensor:
    """The bitmask as an int32 tensor; numpy arrays are shared, not copied."""
    import torch

    if isinstance(bitmask, np.ndarray):
        if bitmask.dtype != np.int32:
            raise TypeError(f"bitmask must be int32 (native byte order), got numpy {bitmask.dtype}")
        # torch warns on read-only arrays although the kernels only read the mask: copy those.
        return torch.from_numpy(bitmask if bitmask.flags.writeable else bitmask.copy())
    if not isinstance(bitmask, torch.Tensor):
        raise TypeError(
            f"bitmask must be a torch.Tensor or numpy array, got {type(bitmask).__name__}"
        )
    if bitmask.dtype != torch.int32:
        raise TypeError(f"bitmask must be int32, got {bitmask.dtype}")
    return bitmask


def _rows(indices: object, logits: torch.Tensor, bitmask: torch.Tensor) -> torch.Tensor | None:
    """The selected rows as int64 on the logits' device, or None for every row."""
    import torch

    if indices is None:
        if bitmask.shape[0] != logits.shape[0]:
            raise ValueError(
                f"bitmask has {bitmask.shape[0]} rows but logits have {logits.shape[0]}; "
                f"give one mask row per logits row"
            )
        return None
    rows = torch.as_tensor(indices)
    if rows.ndim != 1:
        raise ValueError(f"indices must be one-dimensional, got shape {tuple(rows.shape)}")
    if rows.numel() == 0:
        return rows.to(device=logits.device, dtype=torch.int64)
    if rows.dtype == torch.bool or rows.is_floating_point() or rows.is_complex():
        raise TypeError(f"indices must be integers, got {rows.dtype}")
    bound = min(logits.shape[0], bitmask.shape[0])
    low, high = int(rows.min()), int(rows.max())
    if low < 0 or high >= bound:
        raise ValueError(
            f"index {low if low < 0 else high} is out of range: logits have {logits.shape[0]} rows "
            f"and the bitmask {bitmask.shape[0]}"
        )
    return rows.to(device=logits.device, dtype=torch.int64)


@functools.cache
def _triton_imports() -> bool:
    try:
        from . import triton_kernel  # noqa: F401
    except MissingDependencyError:
        return False
    return True


__all__ = ["Backend", "apply_bitmask_inplace", "available_backends"]
