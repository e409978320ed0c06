"""CFG benchmark: guide's lark grammars against xgrammar and llguidance, from one run.

Workloads of ../shared/data/workloads.json on the embedded SmolLM2-135M-Instruct vocabulary
(49,152 tokens), CPU:

- `lark.arith` and `lark.sql`: the lark grammar and its reference document;
- `json_any`: the document serialised with `json.dumps`, under guide's builtin JSON grammar
  (RFC 8259); xgrammar runs its builtin JSON grammar, llguidance the same lark text.

The anchors get the very same lark text (`xgrammar.Grammar.from_lark`,
`llguidance.LLMatcher.grammar_from_lark`). For every engine: cold compile (guide: `Grammar(...)`
+ `compile`, every cache off), first mask, then per-token mask + advance (p50 / p99 µs) on the
reference tokenization plus EOS: the first walk after compile ("cold": guide fills its caches
during it) and the following walks ("warm"). Every engine first walks the document strictly
(each token in the mask and accepted, EOS allowed at the end); failures are reported, not hidden.

    python benchmarks/bench_cfg.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
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

# ARCHITECTURE.md §5: (p50 µs, p99 µs) per token; compile and first-mask targets.
TARGETS = {
    "arith": (150.0, 1_500.0),
    "sql": (300.0, 5_000.0),
    "json_any": (100.0, 1_000.0),
    "schema_a": (100.0, 1_000.0),
    "schema_b": (100.0, 1_000.0),
    "schema_c": (100.0, 1_000.0),
}
TARGET_COMPILE_S = 0.5
TARGET_CACHED_S = 0.1
COMPILE_TARGETS_S = {"schema_c": 2.0}  # the 49-property schema has a looser cold-compile target
TARGET_FIRST_MASK_MS = 20.0


def load_workloads() -> dict[str, tuple[str, str]]:
    """name -> (lark grammar, document)."""
    from guide.grammars.cfg import builtin_text
    from guide.grammars.json_schema import schema_to_lark

    data = json.loads(WORKLOADS.read_text())
    return {
        "arith": (data["lark"]["arith"]["grammar"], data["lark"]["arith"]["doc"]),
        "sql": (data["lark"]["sql"]["grammar"], data["lark"]["sql"]["doc"]),
        "json_any": (builtin_text("json"), json.dumps(data["json_any"]["doc"])),
        **{name: (schema_to_lark(w["schema"]).lark_text, json.dumps(w["doc"], separators=(",", ":"), ensure_ascii=False))
           for name, w in schemas().items()},
    }


def schemas() -> dict[str, dict]:
    """The JSON Schema workloads (schema + reference document), for the anchors' own JSON compilers."""
    return json.loads(WORKLOADS.read_text())["json_schema"]


# ---------------------------------------------------------------------------------------------
# engines, in the anchors' shape


def _guide_compile(vocab: Any, name: str, text: str) -> A.AnchorCompiled:
    from guide.grammars.cfg import Grammar, clear_build_memo

    clear_build_memo()  # cold: no table or terminal automaton built earlier in this process either
    return A.GuideCompiled(Grammar(text).compile(vocab, cache=False))


def _xgr_compile(eng: Any, name: str, text: str) -> A.AnchorCompiled:
    xgr = eng._xgr
    compiler = xgr.GrammarCompiler(eng._info, cache_enabled=False)
    if name == "json_any":
        return A._XgrCompiled(xgr, compiler.compile_builtin_json_grammar())
    if name.startswith("schema_"):  # its own JSON Schema compiler, compact layout like guide's
        schema = json.dumps(schemas()[name]["schema"])
        return A._XgrCompiled(xgr, compiler.compile_json_schema(schema, any_whitespace=False, separators=(",", ":")))
    return A._XgrCompiled(xgr, compiler.compile_grammar(xgr.Grammar.from_lark(text)))


def _llg_compile(eng: Any, name: str, text: str) -> A.AnchorCompiled:
    M = eng._llg.LLMatcher
    if name.startswith("schema_"):
        grammar = M.grammar_from_json_schema(schemas()[name]["schema"], defaults={"whitespace_flexible": False})
    else:
        grammar = M.grammar_from_lark(text)
    return A._LlgCompiled(eng._fill, M(eng._lltok, grammar, log_level=0))


@dataclass
class Result:
    engine: str
    workload: str
    compile_s: float = float("nan")
    cached_s: float = float("nan")  # guide: Grammar(text).compile(vocab) again, through its cache
    first_mask_s: float = float("nan")
    background_s: float = float("nan")  # guide: compile start -> its background vocabulary walks done
    check: str = ""
    cold_us: list[float] = field(default_factory=list)
    cold_runs: list[list[float]] = field(default_factory=list)
    warm_us: list[float] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)


def _walk(compiled: A.AnchorCompiled, tokens: list[int], bitmask: np.ndarray, out: list[float]) -> None:
    m = compiled.matcher()
    fill, advance, clock = m.fill, m.advance, time.perf_counter_ns
    for t in tokens:
        t0 = clock()
        fill(bitmask, 0)
        ok = advance(t)
        out.append((clock() - t0) / 1e3)
        if not ok:
            raise RuntimeError(f"token {t} rejected during the timed walk")


def step_median_p99(r: Result) -> float:
    """p99 over steps of each step's median time across the cold walks (robust to preemption)."""
    if not r.cold_runs:
        return float("nan")
    return pct(np.median(np.asarray(r.cold_runs), axis=0).tolist(), 99)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def fmt_us(x: float) -> str:
    if x != x:
        return "-"
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def fmt_ms(x: float) -> str:
    return "-" if x != x else f"{x * 1e3:,.1f} ms"


def ratio(x: float, ref: float) -> str:
    if not (ref > 0) or x != x:
        return "-"
    return f"{x / ref:.2f}×" if x / ref >= 0.1 else f"{x / ref:.2g}×"


def run(quick: bool = False) -> str:
    """Run the benchmark; print and return the markdown section."""
    from transformers import AutoTokenizer

    import guide
    from guide.models import default_model_dir

    tok = AutoTokenizer.from_pretrained(default_model_dir())
    width = int(json.loads((default_model_dir() / "config.json").read_text()).get("vocab_size", len(tok)))
    vocab = guide.Vocabulary.from_tokenizer(tok, width)
    eos = tok.eos_token_id
    cold_walks = 2 if quick else 5
    warm_walks = 10 if quick else 100

    engines: list[tuple[str, Any]] = [("guide", lambda name, text: _guide_compile(vocab, name, text))]
    notes: list[str] = []
    for st in A.available_anchors():
        if st.name not in ("xgrammar", "llguidance"):
            continue
        if st.cls is None:
            notes.append(f"{st.name}: {st.problem}")
            continue
        try:
            eng = st.cls(tok, width)
        except Exception as exc:  # noqa: BLE001 - reported
            notes.append(f"{st.name}: tokenizer setup failed: {type(exc).__name__}: {exc}")
            continue
        fn = _xgr_compile if st.name == "xgrammar" else _llg_compile
        engines.append((f"{st.name} {st.version}", lambda name, text, e=eng, f=fn: f(e, name, text)))

    bitmask = A.allocate(width)
    results: list[Result] = []
    for wname, (text, doc) in load_workloads().items():
        tokens = tok.encode(doc, add_special_tokens=False) + [eos]
        for ename, compile_fn in engines:
            r = Result(ename, wname)
            results.append(r)
            compiles = []
            for i in range(cold_walks):
                try:
                    start = time.perf_counter()
                    compiled = compile_fn(wname, text)
                    compiles.append(time.perf_counter() - start)
                except Exception as exc:  # noqa: BLE001 - reported in the table
                    r.check = f"compile failed: {type(exc).__name__}: {str(exc)[:120]}"
                    break
                start = time.perf_counter()
                compiled.matcher().fill(bitmask, 0)
                first = time.perf_counter() - start
                r.first_mask_s = first if i == 0 else min(r.first_mask_s, first)
                # the cold walk starts once guide's background walks are done (as when compile
                # included them), so that it measures the masks and not GIL contention
                compiled.settle()
                done = compiles[-1] + time.perf_counter() - start
                r.background_s = done if i == 0 else min(r.background_s, done)
                if i == 0:
                    check = A.check_walk(compiled.matcher(), tokens, width)
                    r.check, r.masks = check.message, check.masks
                    if not check.ok:
                        break
                    compiled = compile_fn(wname, text)  # the strict walk warmed the caches
                    compiled.settle()
                run_us: list[float] = []
                _walk(compiled, tokens, bitmask, run_us)
                r.cold_runs.append(run_us)
                r.cold_us.extend(run_us)
            if not compiles or r.check != "ok":
                continue
            r.compile_s = min(compiles)
            if ename == "guide":  # the in-process compile cache, as an application sees it
                from guide.grammars.cfg import Grammar

                Grammar(text).compile(vocab).wait_precomputed()  # no background walks under the warm walks
                start = time.perf_counter()
                Grammar(text).compile(vocab)
                r.cached_s = time.perf_counter() - start
            for _ in range(warm_walks):
                _walk(compiled, tokens, bitmask, r.warm_us)

    out = [
        f"Per-token mask + advance on the SmolLM2 vocabulary ({width:,} ids); cold = the walk right "
        f"after compile ({cold_walks} compile(s)), warm = {warm_walks} further walks. "
        "Anchors get the same lark text (xgrammar: its builtin JSON grammar for json_any).\n"
    ]
    header = ["workload", "engine", "compile", "first mask", "cold p50 µs", "cold p99 µs",
              "cold p99 µs, step median", "warm p50 µs", "warm p99 µs", "cold p50 vs guide", "strict walk"]
    rows = []
    by_key = {(r.workload, r.engine): r for r in results}
    for r in results:
        g = by_key[(r.workload, "guide")]
        rows.append([
            r.workload, r.engine, fmt_ms(r.compile_s), fmt_ms(r.first_mask_s),
            fmt_us(pct(r.cold_us, 50)), fmt_us(pct(r.cold_us, 99)), fmt_us(step_median_p99(r)),
            fmt_us(pct(r.warm_us, 50)), fmt_us(pct(r.warm_us, 99)),
            ratio(pct(r.cold_us, 50), pct(g.cold_us, 50)), r.check,
        ])
    out.append(_md(header, rows))
    # Mask agreement along the reference walk (informational: the anchors' lark dialects differ).
    diffs = []
    for r in results:
        g = by_key[(r.workload, "guide")]
        if r is g or not r.masks or not g.masks:
            continue
        n = sum(not np.array_equal(a, b) for a, b in zip(g.masks, r.masks))
        diffs.append(f"{r.workload} / {r.engine}: masks differ from guide's at {n} of {len(g.masks)} steps")
    if diffs:
        out.append("\n" + "\n".join(f"- {d}" for d in diffs))
    verdicts = []
    for w, (p50, p99) in TARGETS.items():
        g = by_key.get((w, "guide"))
        if g is None or not g.cold_us:
            continue
        ok = pct(g.cold_us, 50) <= p50 and step_median_p99(g) <= p99
        ok_c = (
            g.compile_s <= COMPILE_TARGETS_S.get(w, TARGET_COMPILE_S)
            and g.first_mask_s * 1e3 <= TARGET_FIRST_MASK_MS
            and g.cached_s <= TARGET_CACHED_S
        )
        verdicts.append([w, f"≤ {p50:,.0f} / ≤ {p99:,.0f} µs",
                         f"{fmt_us(pct(g.cold_us, 50))} / {fmt_us(step_median_p99(g))} µs",
                         "yes" if ok else "**NO**", fmt_ms(g.compile_s), fmt_ms(g.background_s), fmt_ms(g.cached_s),
                         "yes" if ok_c else "**NO**"])
    out.append(
        "\nguide against ARCHITECTURE.md §5: cold p50, and p99 of the per-step median over the cold walks "
        "(a single walk has 26-90 steps, so its p99 is its slowest step, and a time slice lost to "
        "another process on a shared CPU, ~4 ms, lands there; the pooled p99 is in the table above); "
        "compile ≤ 0.5 s (schema_c ≤ 2 s), cached compile (the in-process compile cache; compiled "
        "grammars are not kept on disk) ≤ 100 ms, first mask ≤ 20 ms. guide's compile returns with the "
        "first mask computed; its vocabulary walks for the states a text is likely to reach next go on "
        "in a background thread (0.25 s of CPU at most; they overlap the model's forward passes), and "
        "the cold walks above start once those are done:\n"
    )
    out.append(_md(["workload", "target p50 / p99", "guide", "met", "compile", "background walks done",
                    "cached compile", "compile, cached, first mask met"], verdicts))
    if notes:
        out.append("\n" + "\n".join(f"- {n}" for n in notes))
    out.append("\n### End-to-end generation under a JSON Schema (schema_b)\n")
    _end_to_end(quick, out)
    text = "\n".join(out) + "\n"
    print(text)
    return text


def _end_to_end(quick: bool, out: list[str]) -> dict[str, Any]:
    """ARCHITECTURE.md §5 end-to-end overhead, for a grammar rather than a regex: the same
    measurement as bench_regex (interleaved constrained / same-length unconstrained runs)."""
    from bench_regex import bench_generate

    import guide

    work = schemas()["schema_b"]
    prompt = (
        "Reply with one JSON object, no prose, that follows this JSON Schema:\n"
        + json.dumps(work["schema"], separators=(",", ":"))
    )
    result = bench_generate(quick, out, spec=guide.json_schema(work["schema"]), label="guide.json_schema(schema_b)",
                            prompt=prompt, max_new_tokens=96)
    ok = result["overhead"] <= 0.05 or result["proc_share"] <= 0.05
    out.append(
        f"Target: end-to-end overhead ≤ 5%: median wall {result['overhead'] * 100:+.1f}%, processor time "
        f"{result['proc_share'] * 100:.1f}% of the unconstrained wall — {'met' if ok else '**NOT met**'}.\n"
    )
    return result


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    run(quick=args.quick)


if __name__ == "__main__":
    main()
