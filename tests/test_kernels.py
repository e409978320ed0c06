"""Every apply-bitmask backend against the reference ``torch.where(allowed, logits, -inf)``.

The Triton kernel runs under Triton's CPU interpreter: ``TRITON_INTERPRET=1`` is read when
``@triton.jit`` decorates the kernel, i.e. when ``guide.kernels.triton_kernel`` is imported, so the
`backends` fixture (re)imports that module with the variable set, and restores both afterwards.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import guide.kernels
from guide.errors import MissingDependencyError
from guide.kernels import apply_bitmask_inplace, available_backends, torch_kernel

TRITON_MODULE = "guide.kernels.triton_kernel"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
INT_VIEW = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


def reference(
    logits: torch.Tensor, bitmask: torch.Tensor, indices: list[int] | None = None, vocab_size: int | None = None
) -> torch.Tensor:
    """The documented semantics, written out with torch.where."""
    rows, width = logits.shape
    limit = 32 * bitmask.shape[1] if vocab_size is None else min(32 * bitmask.shape[1], vocab_size)
    t = torch.arange(min(width, limit))
    allowed = torch.zeros(bitmask.shape[0], width, dtype=torch.bool)
    allowed[:, : t.numel()] = ((bitmask[:, t // 32] >> (t % 32)) & 1).bool()
    out = logits.clone()
    for r in range(rows) if indices is None else indices:
        out[r] = torch.where(allowed[r], logits[r], float("-inf"))
    return out


def assert_bitwise_equal(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal bit for bit: NaN payloads and the sign of zero included."""
    assert actual.dtype == expected.dtype
    int_dtype = INT_VIEW[actual.dtype]
    assert torch.equal(actual.contiguous().view(int_dtype), expected.contiguous().view(int_dtype))


def random_case(rows: int, width: int, words: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, width, generator=g).to(dtype)
    bitmask = torch.randint(-(2**31), 2**31, (rows, words), generator=g, dtype=torch.int64).to(torch.int32)
    return logits, bitmask


@pytest.fixture(scope="module")
def interpreted_triton() -> Iterator[object]:
    """guide.kernels.triton_kernel with its kernel built by Triton's interpreter."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed (pip install 'guide-decoding[kernels]')")
    from triton.runtime.interpreter import InterpretedFunction

    was_imported = TRITON_MODULE in sys.modules
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_INTERPRET", "1")
        if was_imported:
            module = importlib.reload(sys.modules[TRITON_MODULE])
        else:
            module = importlib.import_module(TRITON_MODULE)
    assert isinstance(module._apply_bitmask_kernel, InterpretedFunction)
    yield module
    if was_imported:
        importlib.reload(module)  # back to the compiled kernel for whatever runs next
    else:
        del sys.modules[TRITON_MODULE]
        delattr(guide.kernels, "triton_kernel")


@pytest.fixture(params=["torch", "torch-generic", "triton"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A backend name for `apply_bitmask_inplace`; "torch-generic" is the torch backend with its
    numpy CPU path turned off, i.e. the code that runs on GPUs and other devices."""
    if request.param == "triton":
        request.getfixturevalue("interpreted_triton")
    if request.param == "torch-generic":
        monkeypatch.setattr(torch_kernel, "_NUMPY_CPU", False)
        return "torch"
    return request.param


# -- parity ------------------------------------------------------------------------------------

# (logits width, mask words, vocab_size): V not divisible by 32, logits wider and narrower than
# the mask, vocab_size below the logits width and above it.
SHAPES = [
    (1, 1, None),
    (31, 1, None),
    (33, 2, None),
    (4097, 129, None),
    (49159, 1537, None),
    (100, 2, None),
    (40, 3, None),
    (100, 4, 70),
    (100, 4, 0),
    (40, 2, 60),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("width", "words", "vocab_size"), SHAPES)
def test_matches_reference(backend: str, dtype: torch.dtype, width: int, words: int, vocab_size: int | None) -> None:
    logits, bitmask = random_case(3, width, words, dtype)
    expected = reference(logits, bitmask, vocab_size=vocab_size)
    apply_bitmask_inplace(logits, bitmask, vocab_size=vocab_size, backend=backend)
    assert_bitwise_equal(logits, expected)


@pytest.mark.parametrize("indices", [[1], [3, 0], np.array([2]), torch.tensor([0, 2, 3]), [2, 2]], ids=str)
def test_indices_leave_other_rows_alone(backend: str, indices: object) -> None:
    logits, bitmask = random_case(4, 100, 3, torch.float32, seed=1)
    selected = [int(i) for i in indices]  # type: ignore[attr-defined]
    expected = reference(logits, bitmask, selected)
    untouched = [r for r in range(4) if r not in selected]
    before = logits[untouched].clone()
    apply_bitmask_inplace(logits, bitmask, indices, backend=backend)  # type: ignore[arg-type]
    assert_bitwise_equal(logits, expected)
    assert_bitwise_equal(logits[untouched], before)


def test_indices_with_fewer_logits_rows_than_mask_rows(backend: str) -> None:
    logits, bitmask = random_case(2, 64, 2, torch.float32, seed=2)
    big_mask = torch.cat([bitmask, torch.zeros(3, 2, dtype=torch.int32)])
    expected = reference(logits, bitmask, [1])
    apply_bitmask_inplace(logits, big_mask, [1], backend=backend)
    assert_bitwise_equal(logits, expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_all_zero_and_all_one_rows(backend: str, dtype: torch.dtype) -> None:
    logits = torch.randn(2, 70).to(dtype)
    original = logits.clone()
    bitmask = torch.tensor([[0, 0, 0], [-1, -1, -1]], dtype=torch.int32)
    apply_bitmask_inplace(logits, bitmask, backend=backend)
    assert torch.isneginf(logits[0]).all()
    assert_bitwise_equal(logits[1], original[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_special_values_survive_bit_for_bit(backend: str, dtype: torch.dtype) -> None:
    values = [float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 1.5, -3.0, 65504.0]
    logits = torch.tensor([values * 4], dtype=dtype)
    bitmask = torch.tensor([[0b10101010_10101010_10101010_10101010 - 2**32]], dtype=torch.int32)
    expected = reference(logits, bitmask)
    apply_bitmask_inplace(logits, bitmask, backend=backend)
    assert_bitwise_equal(logits, expected)


def test_strided_logits_view(backend: str) -> None:
    storage = torch.randn(3, 200)
    logits = storage[:, ::2]  # column stride 2: the odd columns must not be written
    bitmask = random_case(3, 1, 4, torch.float32, seed=3)[1]
    expected = reference(logits, bitmask)
    odd = storage[:, 1::2].clone()
    apply_bitmask_inplace(logits, bitmask, backend=backend)
    assert_bitwise_equal(storage[:, ::2], expected)
    assert_bitwise_equal(storage[:, 1::2], odd)


def test_one_dimensional_and_numpy_inputs(backend: str) -> None:
    logits, bitmask = random_case(1, 50, 2, torch.float16, seed=4)
    expected = reference(logits, bitmask)[0]
    row = logits[0].clone()
    apply_bitmask_inplace(row, bitmask[0].numpy(), backend=backend)
    assert_bitwise_equal(row, expected)


def test_empty_inputs_are_no_ops(backend: str) -> None:
    apply_bitmask_inplace(torch.empty(0, 10), torch.empty(0, 1, dtype=torch.int32), backend=backend)
    logits = torch.randn(2, 10)
    before = logits.clone()
    apply_bitmask_inplace(logits, torch.zeros(2, 1, dtype=torch.int32), [], backend=backend)
    assert torch.equal(logits, before)


@pytest.mark.parametrize("numpy_cpu", [True, False], ids=["numpy-path", "torch-path"])
@settings(max_examples=150, deadline=None)
@given(
    rows=st.integers(1, 6),
    width=st.integers(1, 200),
    words=st.integers(0, 8),
    vocab_size=st.one_of(st.none(), st.integers(0, 260)),
    dtype=st.sampled_from(DTYPES),
    data=st.data(),
)
def test_torch_backend_property(
    numpy_cpu: bool, rows: int, width: int, words: int, vocab_size: int | None, dtype: torch.dtype, data: st.DataObject
) -> None:
    seed = data.draw(st.integers(0, 2**16), label="seed")
    chunk = data.draw(st.integers(1, 600), label="elements per numpy pass")
    indices = data.draw(st.one_of(st.none(), st.lists(st.integers(0, rows - 1), max_size=rows)), label="indices")
    logits, bitmask = random_case(rows, width, words, dtype, seed)
    expected = reference(logits, bitmask, indices, vocab_size)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch_kernel, "_NUMPY_CPU", numpy_cpu)
        mp.setattr(torch_kernel, "_CHUNK_ELEMENTS", chunk)
        apply_bitmask_inplace(logits, bitmask, indices, vocab_size=vocab_size, backend="torch")
    assert_bitwise_equal(logits, expected)


def test_same_as_xgrammar() -> None:
    """Masks are interchangeable: xgrammar reads our layout the same way (within its mask width)."""
    xgr = pytest.importorskip("xgrammar", reason="xgrammar is in the bench extra")
    logits, bitmask = random_case(3, 49152, 1536, torch.float32, seed=5)
    theirs = logits.clone()
    xgr.apply_token_bitmask_inplace(theirs, bitmask)
    apply_bitmask_inplace(logits, bitmask)
    assert_bitwise_equal(logits, theirs)


# -- dispatch, validation, optional dependency -------------------------------------------------


def test_auto_uses_torch_for_cpu_logits(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(torch_kernel, "apply_bitmask", lambda *args: calls.append(args))
    apply_bitmask_inplace(torch.zeros(1, 32), torch.zeros(1, 1, dtype=torch.int32))
    assert len(calls) == 1


def test_available_backends() -> None:
    backends = available_backends()
    assert backends[0] == "torch"
    assert ("triton" in backends) == (importlib.util.find_spec("triton") is not None)


@pytest.mark.parametrize(
    ("logits", "bitmask", "kwargs", "error", "match"),
    [
        ([[0.0]], torch.zeros(1, 1, dtype=torch.int32), {}, TypeError, "logits must be a torch.Tensor"),
        (torch.zeros(1, 4, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.int32), {}, TypeError, "float32"),
        (torch.zeros(1, 4, dtype=torch.int32), torch.zeros(1, 1, dtype=torch.int32), {}, TypeError, "float32"),
        (torch.zeros(1, 4, requires_grad=True), torch.zeros(1, 1, dtype=torch.int32), {}, ValueError, "detach"),
        (torch.zeros(1, 4), torch.zeros(1, 1, dtype=torch.int64), {}, TypeError, "int32"),
        (torch.zeros(1, 4), np.zeros((1, 1), dtype=np.uint32), {}, TypeError, "int32"),
        (torch.zeros(1, 4), [[0]], {}, TypeError, "numpy array"),
        (torch.zeros(1, 4), torch.zeros(1, dtype=torch.int32), {}, ValueError, "expected logits"),
        (torch.zeros(1, 1, 4), torch.zeros(1, 1, 1, dtype=torch.int32), {}, ValueError, "expected logits"),
        (torch.zeros(2, 4), torch.zeros(3, 1, dtype=torch.int32), {}, ValueError, "one mask row per logits row"),
        (torch.zeros(2, 4), torch.zeros(2, 1, dtype=torch.int32, device="meta"), {}, ValueError, "copy it first"),
        (torch.zeros(2, 4), torch.zeros(2, 1, dtype=torch.int32), {"indices": [2]}, ValueError, "out of range"),
        (torch.zeros(2, 4), torch.zeros(2, 1, dtype=torch.int32), {"indices": [-1]}, ValueError, "out of range"),
        (torch.zeros(2, 4), torch.zeros(2, 1, dtype=torch.int32), {"indices": [0.0]}, TypeError, "integers"),
        (torch.zeros(2, 4), torch.zeros(2, 1, dtype=torch.int32), {"indices": [True]}, TypeError, "integers"),
        (torch.zeros(2, 4), torch.zeros(2, 1, dtype=torch.int32), {"indices": [[0]]}, ValueError, "one-dimensional"),
        (torch.zeros(2, 4), torch.zeros(2, 1, dtype=torch.int32), {"vocab_size": -1}, ValueError, "vocab_size"),
        (torch.zeros(2, 4), torch.zeros(2, 1, dtype=torch.int32), {"vocab_size": 2.0}, TypeError, "integer"),
        (torch.zeros(2, 4), torch.zeros(2, 1, dtype=torch.int32), {"backend": "cuda"}, ValueError, "backend"),
    ],
)
def test_bad_input_is_rejected(logits: object, bitmask: object, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        apply_bitmask_inplace(logits, bitmask, **kwargs)  # type: ignore[arg-type]


def test_triton_on_cpu_without_interpreter_says_why() -> None:
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed (pip install 'guide-decoding[kernels]')")
    code = (
        "import torch, guide.kernels as k\n"
        "try:\n"
        "    k.apply_bitmask_inplace(torch.zeros(1, 4), torch.zeros(1, 1, dtype=torch.int32), backend='triton')\n"
        "except ValueError as e:\n"
        "    print(e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "runs on CUDA tensors" in out.stdout


def test_missing_triton_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "triton", None)  # makes `import triton` raise ImportError
    monkeypatch.delitem(sys.modules, TRITON_MODULE, raising=False)
    monkeypatch.delattr(guide.kernels, "triton_kernel", raising=False)
    with pytest.raises(MissingDependencyError, match=r"pip install 'guide-decoding\[kernels\]'"):
        importlib.import_module(TRITON_MODULE)


def test_importing_kernels_and_bitmask_loads_neither_torch_nor_triton() -> None:
    code = (
        "import json, sys; import guide.kernels, guide.bitmask; "
        "print(json.dumps([m for m in ('torch', 'triton') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
