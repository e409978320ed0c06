"""Regex benchmark: guide against xgrammar, llguidance and outlines-core, from one run.

Workload `regex.datetime` of ../shared/data/workloads.json on the embedded SmolLM2-135M-Instruct
vocabulary (49,152 tokens), CPU, torch pinned to one thread:

1. per-token mask + advance (p50 / p99 µs): the reference document's canonical tokenization
   plus EOS is walked many times; each step times `fill(bitmask row)` + `advance(token)`.
   Engines are interleaved walk by walk so that background load hits all of them alike;
2. vocabulary preprocessing (guide: cold and from the disk cache; anchors: their tokenizer
   setup), cold compile, first mask after compile;
3. end-to-end `guide.generate` greedy decoding with the regex against unconstrained decoding
   forced to the same number of new tokens (per-token time, overhead %).

Every engine first walks the reference document strictly (each token must be in the mask and be
accepted, EOS must be allowed at the end); failures are reported, never hidden.

    python benchmarks/bench_regex.py [--quick] [--no-generate]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import anchors as A

WORKLOADS = Path(
    os.environ.get("GUIDE_WORKLOADS", HERE.parent.parent / "shared" / "data" / "workloads.json")
)
PROMPT = "Give an ISO 8601 timestamp:"

# Targets (design/ARCHITECTURE.md §5) for this workload.
TARGET_P50_US = 50.0
TARGET_P99_US = 200.0
TARGET_VOCAB_COLD_S = 2.0
TARGET_VOCAB_CACHED_S = 0.2
TARGET_FIRST_MASK_MS = 20.0
TARGET_GENERATE_OVERHEAD = 0.05


def load_workload(name: str = "datetime") -> dict[str, str]:
    data = json.loads(WORKLOADS.read_text())
    return data["regex"][name]


# ---------------------------------------------------------------------------------------------
# guide, in the anchors' shape


class GuideEngine:
    name = "guide"

    def __init__(self, vocab: Any) -> None:
        import guide

        self._guide = guide
        self.vocab = vocab
        self.tokenizer_s = float("nan")
        self.version = guide.__version__

    def compile_regex(self, pattern: str) -> A.AnchorCompiled:
        return A.GuideCompiled(self._guide.regex(pattern).compile(self.vocab, cache=False))


# ---------------------------------------------------------------------------------------------
# helpers


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Wall seconds of `repeats` calls, and the last result."""
    times = []
    out = None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return times, out


def fmt_us(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def fmt_s(x: float) -> str:
    if math.isnan(x):
        return "-"
    if x < 1e-3:
        return f"{x * 1e6:.0f} µs"
    if x < 1:
        return f"{x * 1e3:.1f} ms"
    return f"{x:.2f} s"


def ratio(x: float, ref: float) -> str:
    if not (ref > 0) or math.isnan(x):
        return "-"
    r = x / ref
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "yes" if ok else "**NO**"


@dataclass
class EngineResult:
    name: str
    version: str
    tokenizer_s: float = float("nan")
    compile_s: list[float] = field(default_factory=list)
    first_mask_s: float = float("nan")
    check: str = ""
    check_ok: bool = False
    mask_diffs: list[str] = field(default_factory=list)
    step_us: list[float] = field(default_factory=list)
    fill_us: list[float] = field(default_factory=list)
    advance_us: list[float] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)  # allowed ids before each reference step
    compiled: Any = None


def walk_once(
    compiled: A.AnchorCompiled, tokens: list[int], bitmask: np.ndarray, r: EngineResult | None
) -> None:
    m = compiled.matcher()
    fill = m.fill
    advance = m.advance
    clock = time.perf_counter_ns
    if r is None:
        for t in tokens:
            fill(bitmask, 0)
            advance(t)
        return
    steps, fills, advances = r.step_us, r.fill_us, r.advance_us
    for t in tokens:
        t0 = clock()
        fill(bitmask, 0)
        t1 = clock()
        ok = advance(t)
        t2 = clock()
        if not ok:
            raise RuntimeError(f"{r.name}: token {t} rejected during the timed walk")
        steps.append((t2 - t0) / 1e3)
        fills.append((t1 - t0) / 1e3)
        advances.append((t2 - t1) / 1e3)


def strict_check(
    compiled: A.AnchorCompiled, tokens: list[int], width: int
) -> tuple[A.WalkCheck, bool]:
    """check_walk on a strict matcher, plus whether `fill` overwrites a dirty row (not just sets bits)."""
    check = A.check_walk(compiled.matcher(strict=True), tokens, width)
    m = compiled.matcher()
    dirty = np.full((1, A.bitmask_words(width)), -1, dtype=np.int32)
    clean = np.zeros_like(dirty)
    m.fill(dirty, 0)
    m.fill(clean, 0)
    return check, bool(np.array_equal(dirty, clean))


# ---------------------------------------------------------------------------------------------
# the benchmark


def bench_matchers(quick: bool, out: list[str]) -> dict[str, Any]:
    from transformers import AutoTokenizer

    import guide
    from guide.models import default_model_dir

    work = load_workload()
    pattern, doc = work["pattern"], work["doc"]
    tok = AutoTokenizer.from_pretrained(default_model_dir())
    width = int(
        json.loads((default_model_dir() / "config.json").read_text()).get("vocab_size", len(tok))
    )
    eos = tok.eos_token_id
    tokens = tok.encode(doc, add_special_tokens=False) + [eos]
    walks = 30 if quick else 200
    build_repeats = 1 if quick else 3

    # -- guide: vocabulary preprocessing ------------------------------------------------------
    from guide import vocab as gvocab

    cold, vocab = timed(
        lambda: guide.Vocabulary.from_tokenizer(tok, width, cache=False), build_repeats
    )
    guide.Vocabulary.from_tokenizer(tok, width, cache=True)  # make sure the disk entry exists

    def from_disk() -> Any:
        gvocab.clear_memory_cache()
        return guide.Vocabulary.from_tokenizer(tok, width, cache=True)

    cached, vocab_disk = timed(from_disk, build_repeats + 2)
    memory, _ = timed(lambda: guide.Vocabulary.from_tokenizer(tok, width, cache=True), 5)
    if vocab_disk.tokens != vocab.tokens:
        out.append(
            "**guide: the vocabulary read from the disk cache differs from the cold build.**\n"
        )
    vocab_stats = {
        "cold_s": min(cold),
        "disk_s": statistics.median(cached),
        "memory_s": statistics.median(memory),
    }

    # -- engines: tokenizer setup, cold compile, first mask ------------------------------------
    results: list[EngineResult] = []
    unavailable: list[tuple[str, str]] = []
    engines: list[tuple[EngineResult, Any]] = []
    g = GuideEngine(vocab)
    gres = EngineResult("guide", g.version, tokenizer_s=vocab_stats["cold_s"])
    engines.append((gres, g))
    for st in A.available_anchors():
        if st.cls is None:
            unavailable.append((st.name, st.problem or "?"))
            continue
        try:
            eng = st.cls(tok, width)
        except Exception as exc:  # noqa: BLE001 - an anchor failing to load the tokenizer is a finding
            unavailable.append((st.name, f"tokenizer setup failed: {type(exc).__name__}: {exc}"))
            continue
        engines.append((EngineResult(st.name, st.version, tokenizer_s=eng.tokenizer_s), eng))

    bitmask = A.allocate(width)
    for r, eng in engines:
        try:
            r.compile_s, r.compiled = timed(lambda e=eng: e.compile_regex(pattern), build_repeats)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            r.check = f"compile failed: {type(exc).__name__}: {exc}"
            continue
        start = time.perf_counter()
        m = r.compiled.matcher()
        m.fill(bitmask, 0)
        r.first_mask_s = time.perf_counter() - start
        check, overwrites = strict_check(r.compiled, tokens, width)
        r.check_ok = check.ok
        r.check = check.message + ("" if overwrites else "; fill does NOT overwrite a dirty row")
        r.masks = check.masks
        results.append(r)

    # guide's compile cache: from disk (memory cache cleared) and from memory.
    compile_cache = {"disk_s": float("nan"), "memory_s": float("nan")}
    try:
        from guide.constraint import COMPILE_CACHE
    except ImportError:
        COMPILE_CACHE = None
    spec = guide.regex(pattern)
    if COMPILE_CACHE is not None:
        spec.compile(vocab)  # make sure the entry exists (on disk when the spec allows it)

        def compile_from_cache() -> Any:
            COMPILE_CACHE.clear()
            return guide.regex(pattern).compile(vocab)

        if spec.disk_cacheable:
            compile_cache["disk_s"] = statistics.median(
                timed(compile_from_cache, build_repeats + 2)[0]
            )
        compile_cache["memory_s"] = statistics.median(
            timed(lambda: guide.regex(pattern).compile(vocab), 5)[0]
        )

    # Mask agreement with guide, step by step (the anchors agree among themselves on this regex).
    ref = gres.masks or None
    if ref is not None:
        for r in results:
            if r is gres:
                continue
            for step, (a, b) in enumerate(zip(ref, r.masks)):
                if not np.array_equal(a, b):
                    sa, sb = set(a.tolist()), set(b.tolist())
                    r.mask_diffs.append(
                        f"step {step}: guide {len(sa)} ids, {r.name} {len(sb)}; only guide "
                        f"{sorted(sa - sb)[:5]}, only {r.name} {sorted(sb - sa)[:5]}"
                    )

    # -- timed walks, interleaved -------------------------------------------------------------
    runnable = [r for r in results if r.compiled is not None and r.check_ok]
    # outlines-core fails the strict EOS step; its lenient matcher (see anchors.py) is timed.
    runnable += [
        r
        for r in results
        if r.compiled is not None and not r.check_ok and r.name == "outlines-core"
    ]
    for r in runnable:
        for _ in range(3):
            walk_once(r.compiled, tokens, bitmask, None)
    for _ in range(walks):
        for r in runnable:
            walk_once(r.compiled, tokens, bitmask, r)

    # -- tables -------------------------------------------------------------------------------
    gp50 = pct(gres.step_us, 50) if gres.step_us else float("nan")
    gp99 = pct(gres.step_us, 99) if gres.step_us else float("nan")
    rows = []
    for r in results:
        if not r.step_us:
            rows.append([r.name, r.version, "-", "-", "-", "-", "-", "-", "-", "-"])
            continue
        p50, p99 = pct(r.step_us, 50), pct(r.step_us, 99)
        rows.append(
            [
                r.name,
                r.version,
                fmt_us(p50),
                fmt_us(p99),
                fmt_us(max(r.step_us)),
                fmt_us(pct(r.fill_us, 50)),
                fmt_us(pct(r.advance_us, 50)),
                ratio(p50, gp50),
                ratio(p99, gp99),
                f"{len(r.step_us):,}",
            ]
        )
    out.append(
        f"Per-token mask + advance, µs ({len(tokens)} steps = {len(tokens) - 1} document tokens + EOS, "
        f"× {walks} walks; ratio = engine / guide, so < 1 means the engine is faster; "
        "max is mostly the OS preempting the process on a shared machine):\n"
    )
    out.append(
        md_table(
            [
                "engine",
                "version",
                "p50",
                "p99",
                "max",
                "fill p50",
                "advance p50",
                "p50 vs guide",
                "p99 vs guide",
                "samples",
            ],
            rows,
        )
    )
    out.append("")

    rows = []
    gc_s = statistics.median(gres.compile_s) if gres.compile_s else float("nan")
    for r in results:
        c = statistics.median(r.compile_s) if r.compile_s else float("nan")
        rows.append(
            [
                r.name,
                fmt_s(r.tokenizer_s),
                fmt_s(c),
                ratio(c, gc_s),
                fmt_s(r.first_mask_s),
            ]
        )
    out.append(
        f"Setup (median of {build_repeats}; tokenizer setup = guide's cold `Vocabulary.from_tokenizer`, "
        "xgrammar `TokenizerInfo.from_huggingface`, llguidance `hf.from_tokenizer`, outlines-core "
        "`Vocabulary` from the decoded token bytes; compile is cold, caches off; first mask = "
        "new matcher + first fill):\n"
    )
    out.append(
        md_table(
            ["engine", "tokenizer setup", "compile (cold)", "compile vs guide", "first mask"], rows
        )
    )
    out.append("")

    out.append(
        f"guide vocabulary preprocessing: cold (`cache=False`, best of {build_repeats}) "
        f"**{fmt_s(vocab_stats['cold_s'])}**; from the disk cache (memory cache cleared, median) "
        f"**{fmt_s(vocab_stats['disk_s'])}**; in-memory hit {fmt_s(vocab_stats['memory_s'])}. "
        f"guide regex compile from the disk cache (memory cache cleared, median, pattern parse included) "
        f"{fmt_s(compile_cache['disk_s'])}; in-memory hit {fmt_s(compile_cache['memory_s'])}.\n"
    )
    checks = [f"- {r.name}: {r.check}" for r in results]
    checks += [f"- {name}: {problem}" for name, problem in unavailable]
    out.append(
        "Reference walk (every token of `tok.encode(doc)` in the mask and accepted, then EOS):\n"
    )
    out.append("\n".join(checks))
    out.append("")
    if any(r.name == "outlines-core" and not r.check_ok and r.step_us for r in results):
        out.append(
            "outlines-core is timed anyway, with EOS in a final state accepted without calling "
            "`Guide.advance` (outlines itself stops the sequence at EOS); every other step is its own.\n"
        )
    diffs = [f"- {r.name}: {d}" for r in results for d in r.mask_diffs[:5]]
    if diffs:
        out.append("Mask disagreements with guide along the reference walk:\n")
        out.append("\n".join(diffs))
    elif ref is not None:
        out.append(
            "All engines' masks are identical to guide's at every step of the reference walk."
        )
    out.append("")
    return {
        "p50_us": gp50,
        "p99_us": gp99,
        "vocab": vocab_stats,
        "first_mask_s": gres.first_mask_s,
        "compile_s": gc_s,
        "guide_ok": gres.check_ok,
        "anchors": {
            r.name: (pct(r.step_us, 50), pct(r.step_us, 99))
            for r in results
            if r.step_us and r.name != "guide"
        },
    }


class _Counter:
    """A streamer that records how many new tokens `generate` produced (batch of one)."""

    def __init__(self) -> None:
        self.calls = 0
        self.tokens: list[int] = []

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls > 1:  # the first call carries the prompt
            self.tokens.extend(int(v) for v in value.reshape(-1).tolist())

    def end(self) -> None:
        pass


def bench_generate(
    quick: bool, out: list[str], *, spec: Any = None, label: str = "guide.regex", prompt: str = PROMPT,
    max_new_tokens: int = 64,
) -> dict[str, Any]:
    """End-to-end `guide.generate` with `spec` (default: the datetime regex) against unconstrained
    generation of the same length; bench_cfg runs it with the JSON Schema workloads."""
    import torch
    import transformers

    import guide
    from guide.models import load_default_model

    transformers.utils.logging.disable_progress_bar()
    if spec is None:
        spec = guide.regex(load_workload()["pattern"])
    start = time.perf_counter()
    model, tok = load_default_model()
    load_s = time.perf_counter() - start
    repeats = 3 if quick else 11
    common = {"chat": True, "do_sample": False, "allow_incomplete": True}

    def run(constraint: Any, n: int, forced: bool) -> tuple[float, int, str]:
        counter = _Counter()
        extra = {"min_new_tokens": n} if forced else {}
        gc.collect()
        t0 = time.perf_counter()
        text = guide.generate(
            model, tok, prompt, constraint, max_new_tokens=n, streamer=counter, **common, **extra
        )
        return time.perf_counter() - t0, len(counter.tokens), text

    # Warm up both paths (vocabulary, compile cache, kernels, allocator).
    _, n_con, text_con = run(spec, max_new_tokens, False)
    run(spec, max_new_tokens, False)
    run(None, n_con, True)
    con, unc = [], []
    for _ in range(repeats):
        t, n, _ = run(spec, max_new_tokens, False)
        if n != n_con:
            raise RuntimeError(f"greedy constrained run produced {n} tokens, then {n_con}")
        con.append(t)
        t, n, _ = run(None, n_con, True)
        if n != n_con:
            raise RuntimeError(f"forced unconstrained run produced {n} tokens, expected {n_con}")
        unc.append(t)
    _, n_free, text_free = run(None, n_con, False)

    # The processor's own time per step, timed from inside model.generate: far less noisy than
    # the difference of two wall times when other processes share the CPU.
    from transformers import LogitsProcessor

    from guide.generate import eos_ids_of, format_prompt

    class Timed(LogitsProcessor):
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.ns: list[int] = []

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            t0 = time.perf_counter_ns()
            out = self.inner(input_ids, scores)
            self.ns.append(time.perf_counter_ns() - t0)
            return out

    eos = eos_ids_of(model, tok)
    inputs = tok(
        [format_prompt(tok, prompt, chat=True)], return_tensors="pt", add_special_tokens=False
    )
    first_us, step_us = [], []
    for _ in range(repeats):
        timed_proc = Timed(guide.constrain(tok, spec, eos_token_id=eos))
        with torch.inference_mode():
            model.generate(
                **inputs,
                logits_processor=[timed_proc],
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else eos[0],
            )
        first_us.append(timed_proc.ns[0] / 1e3)
        step_us.extend(n / 1e3 for n in timed_proc.ns[1:])
    proc_total_us = statistics.median(first_us) + statistics.mean(step_us) * (n_con - 1)

    c_med, u_med = statistics.median(con), statistics.median(unc)
    overhead = c_med / u_med - 1
    overhead_min = min(con) / min(unc) - 1
    proc_share = proc_total_us / 1e6 / u_med
    # Paired per-repeat overheads show the noise.
    paired = sorted(c / u - 1 for c, u in zip(con, unc))
    rows = [
        [
            "unconstrained (min = max new tokens)",
            str(n_con),
            fmt_s(u_med),
            f"{u_med / n_con * 1e3:.2f}",
            f"{n_con / u_med:.1f}",
            "-",
        ],
        [
            f"{label} (stops at EOS)",
            str(n_con),
            fmt_s(c_med),
            f"{c_med / n_con * 1e3:.2f}",
            f"{n_con / c_med:.1f}",
            f"{overhead * 100:+.1f}%",
        ],
    ]
    out.append(
        f"End-to-end `guide.generate`, greedy, chat template, prompt {prompt!r}, median of {repeats} "
        f"interleaved repeats after warm-up (model load {load_s:.1f} s; tokens counted with a streamer, "
        "EOS included, prefill included in both):\n"
    )
    out.append(md_table(["run", "new tokens", "wall", "ms / token", "tokens/s", "overhead"], rows))
    out.append("")
    out.append(
        f"Overhead from the fastest repeat of each: {overhead_min * 100:+.1f}%; paired overheads per repeat: "
        f"{', '.join(f'{p * 100:+.1f}%' for p in paired)} (the spread is background load, not guide). "
        f"The unconstrained run is held to the same length with `min_new_tokens`, which masks EOS each step.\n"
    )
    out.append(
        f"Time inside guide's logits processor, timed per call within `model.generate` ({repeats} runs): "
        f"first call {statistics.median(first_us) / 1e3:.1f} ms (vocabulary lookup from the in-memory cache, "
        f"compile-cache hit, first mask), later calls p50 {pct(step_us, 50):.0f} µs / p99 {pct(step_us, 99):.0f} µs "
        f"(advance + fill + apply to the logits). Summed over the {n_con} steps: {proc_total_us / 1e3:.1f} ms = "
        f"**{proc_share * 100:.1f}%** of the unconstrained run's wall time.\n"
    )
    out.append(
        f"Constrained output: `{text_con}`; unconstrained (free, {n_free} tokens): `{text_free.strip()[:80]}`\n"
    )
    return {
        "overhead": overhead,
        "overhead_min": overhead_min,
        "proc_share": proc_share,
        "tokens": n_con,
        "con_s": c_med,
        "unc_s": u_med,
        "paired": paired,
    }


def run(quick: bool = False, generate: bool = True) -> str:
    """Run everything; print and return the markdown section."""
    import torch

    torch.set_num_threads(1)
    mode = "quick run (fewer repeats)" if quick else "full run"
    out: list[str] = [f"torch.set_num_threads(1); {os.cpu_count()} CPUs visible; {mode}.\n"]
    m = bench_matchers(quick, out)
    g = bench_generate(quick, out) if generate else None

    rows = [
        [
            "regex mask + advance p50",
            "≤ 50 µs",
            f"{fmt_us(m['p50_us'])} µs",
            verdict(m["p50_us"] <= TARGET_P50_US),
        ],
        [
            "regex mask + advance p99",
            "≤ 200 µs",
            f"{fmt_us(m['p99_us'])} µs",
            verdict(m["p99_us"] <= TARGET_P99_US),
        ],
        [
            "vocabulary preprocessing, cold",
            "≤ 2 s",
            fmt_s(m["vocab"]["cold_s"]),
            verdict(m["vocab"]["cold_s"] <= TARGET_VOCAB_COLD_S),
        ],
        [
            "vocabulary preprocessing, disk cache",
            "≤ 0.2 s",
            fmt_s(m["vocab"]["disk_s"]),
            verdict(m["vocab"]["disk_s"] <= TARGET_VOCAB_CACHED_S),
        ],
        [
            "first mask after compile",
            "≤ 20 ms",
            fmt_s(m["first_mask_s"]),
            verdict(m["first_mask_s"] <= TARGET_FIRST_MASK_MS / 1e3),
        ],
        ["regex compile (cold)", "≤ 0.5 s", fmt_s(m["compile_s"]), verdict(m["compile_s"] <= 0.5)],
    ]
    if g is not None:
        rows.append(
            [
                "generate overhead vs unconstrained (median wall)",
                "≤ 5%",
                f"{g['overhead'] * 100:+.1f}%",
                verdict(g["overhead"] <= TARGET_GENERATE_OVERHEAD),
            ]
        )
        rows.append(
            [
                "generate: guide processor time / unconstrained wall",
                "≤ 5%",
                f"{g['proc_share'] * 100:.1f}%",
                verdict(g["proc_share"] <= TARGET_GENERATE_OVERHEAD),
            ]
        )
    summary = [
        "Targets (design/ARCHITECTURE.md §5):\n",
        md_table(["target", "bound", "guide", "met"], rows),
        "",
    ]
    text = "\n".join(out[:1] + summary + out[1:])
    print(text, flush=True)
    return text


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    parser.add_argument("--no-generate", action="store_true", help="skip the end-to-end model run")
    args = parser.parse_args(argv)
    return run(quick=args.quick, generate=not args.no_generate)


if __name__ == "__main__":
    main()
