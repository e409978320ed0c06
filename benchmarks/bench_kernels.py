"""Apply-bitmask kernels on CPU: guide's torch backend against xgrammar's CPU kernel.

float32 logits [rows, 49152] with rows 1 / 8 / 64, torch pinned to one thread. Each call masks the
logits in place with one of 16 precomputed masks, in rotation, so that a branch predictor cannot
learn one mask by heart. Two mask families:

* grammar-like: each row allows a few random tokens (1..3000) or forbids a few, the shapes real
  constraint states have (digits only, "anything but a quote");
* random: every bit a coin flip, the worst case for kernels that branch per token.

Engines are interleaved call by call; each figure is the median of the per-call times. Besides
xgrammar, "unpackbits + masked_fill_" times the obvious numpy design (unpack to bool, then
``masked_fill_``) for reference. Ratios are engine / guide. The Triton backend is not timed here
(CPU only); tests/test_kernels.py checks it for parity under TRITON_INTERPRET=1.

    python benchmarks/bench_kernels.py [--quick] [--output docs/kernels.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import numpy as np
from run import _cpu_model, _version

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from guide.bitmask import bitmask_width, pack_bool, unpack_bool  # noqa: E402

VOCAB = 49152
ROWS = (1, 8, 64)
N_MASKS = 16
COMMAND = ".venv/bin/python benchmarks/bench_kernels.py --output docs/kernels.md"


def grammar_like_masks(rows: int, rng: np.random.Generator) -> list[np.ndarray]:
    masks = []
    for _ in range(N_MASKS):
        allowed = np.zeros((rows, VOCAB), dtype=bool)
        for r in range(rows):
            ids = rng.integers(0, VOCAB, int(rng.integers(1, 3000)))
            if rng.random() < 0.5:
                allowed[r, ids] = True
            else:
                allowed[r] = True
                allowed[r, ids] = False
        masks.append(pack_bool(allowed))
    return masks


def random_masks(rows: int, rng: np.random.Generator) -> list[np.ndarray]:
    words = (rows, bitmask_width(VOCAB))
    return [rng.integers(-(2**31), 2**31, size=words, dtype=np.int64).astype(np.int32) for _ in range(N_MASKS)]


def engines() -> dict[str, Callable]:
    """name -> apply(logits, bitmask tensor) for every engine installed here."""
    import torch

    from guide.kernels import apply_bitmask_inplace

    def guide_torch(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
        apply_bitmask_inplace(logits, bitmask, backend="torch")

    def unpackbits_masked_fill(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
        forbidden = np.invert(bitmask.numpy(), order="C").view(np.uint8)
        bits = np.unpackbits(forbidden, axis=-1, count=logits.shape[1], bitorder="little")
        logits.masked_fill_(torch.from_numpy(bits.view(np.bool_)), float("-inf"))

    found: dict[str, Callable] = {"guide (torch)": guide_torch, "unpackbits + masked_fill_": unpackbits_masked_fill}
    try:
        import xgrammar
    except ImportError:
        return found
    found["xgrammar"] = lambda logits, bitmask: xgrammar.apply_token_bitmask_inplace(logits, bitmask)
    return found


def time_engines(found: dict[str, Callable], rows: int, masks: list[np.ndarray], calls: int) -> dict[str, float]:
    """Median µs per call of each engine, the engines interleaved call by call."""
    import torch

    bitmasks = [torch.from_numpy(m) for m in masks]
    logits = {name: torch.randn(rows, VOCAB) for name in found}
    for name, apply in found.items():  # warm-up, and a check that every engine agrees
        reference = torch.randn(rows, VOCAB)
        expected = torch.where(torch.from_numpy(unpack_bool(masks[0], VOCAB)), reference, float("-inf"))
        apply(reference, bitmasks[0])
        if not torch.equal(reference, expected):
            raise AssertionError(f"{name} disagrees with the reference")
    samples: dict[str, list[float]] = {name: [] for name in found}
    for i in range(calls):
        bitmask = bitmasks[i % N_MASKS]
        for name, apply in found.items():
            t0 = time.perf_counter()
            apply(logits[name], bitmask)
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(s) * 1e6 for name, s in samples.items()}


def time_alone(rows: int, quick: bool) -> dict[str, float]:
    """guide's µs per call for each logits dtype, calls back to back (warm caches), median of 7 timeit runs."""
    import torch

    from guide.kernels import apply_bitmask_inplace

    bitmask = torch.from_numpy(random_masks(rows, np.random.default_rng(1))[0])
    number = max(5, (200 if quick else 2000) // rows)
    out = {}
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        logits = torch.randn(rows, VOCAB).to(dtype)
        runs = timeit.repeat(lambda: apply_bitmask_inplace(logits, bitmask), number=number, repeat=7)
        out[str(dtype).removeprefix("torch.")] = statistics.median(runs) / number * 1e6
    return out


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def run(quick: bool = False) -> str:
    """Time every engine; print and return the markdown section."""
    import torch

    torch.set_num_threads(1)
    found = engines()
    names = list(found)
    anchors = [n for n in names if n != "guide (torch)"]
    rng = np.random.default_rng(0)
    table = []
    for family, make in (("grammar-like", grammar_like_masks), ("random", random_masks)):
        for rows in ROWS:
            calls = max(20, (2000 if not quick else 200) // rows)
            us = time_engines(found, rows, make(rows, rng), calls)
            ours = us["guide (torch)"]
            table.append(
                [family, str(rows)]
                + [f"{us[n]:.1f}" for n in names]
                + [f"{us[n] / ours:.2f}x" for n in anchors]
            )
    header = ["masks", "rows"] + [f"{n} µs" for n in names] + [f"{n} / guide" for n in anchors]
    alone = {rows: time_alone(rows, quick) for rows in ROWS}
    dtypes = list(alone[ROWS[0]])
    versions = ", ".join(f"{d} {_version(d)}" for d in ("torch", "numpy", "xgrammar"))
    text = "\n".join(
        [
            f"CPU: {_cpu_model()}, {os.cpu_count()} CPUs visible; torch.set_num_threads(1); {versions}; "
            f"{'quick run (fewer calls)' if quick else 'full run'}.\n",
            f"Engines interleaved call by call, float32 logits [rows, {VOCAB}], median µs per call over "
            f"{N_MASKS} masks in rotation:\n",
            md_table(header, table),
            "",
            "guide alone, calls back to back (warm caches), median µs per call by logits dtype:\n",
            md_table(["rows"] + [f"{d} µs" for d in dtypes], [[str(r)] + [f"{alone[r][d]:.1f}" for d in dtypes] for r in ROWS]),
            "",
        ]
    )
    if "xgrammar" not in found:
        text += "\nxgrammar is not installed (`pip install -e '.[bench]'`), so it is left out.\n"
    print(text, flush=True)
    return text


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (smoke run)")
    parser.add_argument("--output", type=Path, help="also write the section to this markdown file")
    args = parser.parse_args(argv)
    text = run(quick=args.quick)
    if args.output is not None:
        args.output.write_text(
            "# Apply-bitmask kernels\n\n"
            f"Reproduce with `{COMMAND}` (`--quick` for a smoke run). "
            "What is timed and why: the docstring of `benchmarks/bench_kernels.py`.\n\n"
            f"{text}\n"
            "This task had no GPU, so the Triton kernel (`guide/kernels/triton_kernel.py`) has no "
            "timings here: it was only checked for parity with the torch reference under "
            "`TRITON_INTERPRET=1` (tests/test_kernels.py).\n"
        )
    return text


if __name__ == "__main__":
    main()
