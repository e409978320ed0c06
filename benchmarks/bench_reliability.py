"""Memory ceilings of the reliability issue, measured in one process.

1. Compile the 200 largest schemas of JSONSchemaBench dev (by JSON size) on SmolLM2's 49,152-token
   vocabulary, strict mode, in one process: peak RSS, and how each ended (compiled, a
   GuideError with its class, or over the compile budget).
2. 1,000 `guide.generate` calls with one cached guide on a tiny random model: RSS after the first
   100 and after all 1,000 (growth would be a leak in the processor or the caches).

    python benchmarks/bench_reliability.py [--schemas N] [--calls N]

Writes docs/reliability_memory.md (included by docs/reliability.md).
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import signal
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "jsonschemabench-dev.jsonl"
CEILING_MIB = 4096  # the documented ceiling for compiling the 200 largest schemas in one process
HANG_S = 60  # a compile still running after this is reported as a hang (and interrupted)


class _Hang(Exception):
    pass


def _alarm(_signum, _frame):
    raise _Hang


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def largest_schemas(n: int) -> list[dict]:
    rows = [json.loads(x) for x in DATA.read_text(encoding="utf-8").splitlines() if x.strip()]
    rows.sort(key=lambda r: -len(json.dumps(r["schema"])))
    return rows[:n]


def compile_largest(n: int, vocab) -> dict:
    import guide

    outcomes: collections.Counter = collections.Counter()
    slowest = (0.0, "")
    start_rss = rss_mib()
    t_all = time.perf_counter()
    hangs = []
    signal.signal(signal.SIGALRM, _alarm)
    for i, row in enumerate(largest_schemas(n)):
        t0 = time.perf_counter()
        signal.alarm(HANG_S)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                guide.json_schema(row["schema"]).compile(vocab)
            outcomes["compiled"] += 1
        except guide.GuideError as exc:
            outcomes[type(exc).__name__] += 1
        except _Hang:
            outcomes[f"still compiling after {HANG_S} s"] += 1
            hangs.append(row["id"])
        finally:
            signal.alarm(0)
        dt = time.perf_counter() - t0
        if dt > 10:
            print(f"  slow: {row['id']} {dt:.1f} s", flush=True)
        slowest = max(slowest, (dt, row["id"]))
        if (i + 1) % 20 == 0:
            print(f"  {i + 1}/{n} schemas, RSS {rss_mib():.0f} MiB, peak {peak_mib():.0f} MiB", flush=True)
    return {
        "outcomes": dict(outcomes),
        "start_rss": start_rss,
        "end_rss": rss_mib(),
        "peak": peak_mib(),
        "seconds": time.perf_counter() - t_all,
        "slowest": slowest,
        "hangs": hangs,
    }


def generate_calls(calls: int, tokenizer) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    import guide

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, eos_token_id=2, pad_token_id=2)
    model = LlamaForCausalLM(config).eval()
    spec = guide.regex(r"(19|20)\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")
    after_100 = 0.0
    t0 = time.perf_counter()
    for i in range(calls):
        guide.generate(model, tokenizer, f"prompt {i % 7}", spec, max_new_tokens=12, chat=False, allow_incomplete=True)
        if i + 1 == 100:
            after_100 = rss_mib()
    return {"after_100": after_100, "after_all": rss_mib(), "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--schemas", type=int, default=200)
    ap.add_argument("--calls", type=int, default=1000)
    args = ap.parse_args()

    from transformers import AutoTokenizer

    import guide
    import guide.models

    tok = AutoTokenizer.from_pretrained(guide.models.default_model_dir())
    vocab = guide.Vocabulary.from_tokenizer(tok)
    print(f"compiling the {args.schemas} largest schemas ...", flush=True)
    c = compile_largest(args.schemas, vocab)
    print(json.dumps(c, indent=1))
    print(f"{args.calls} generate calls ...", flush=True)
    g = generate_calls(args.calls, tok)
    print(json.dumps(g, indent=1))
    lines = [
        "<!-- written by benchmarks/bench_reliability.py -->",
        "| measure | value |",
        "|---|---|",
        f"| schemas compiled (the {args.schemas} largest of JSONSchemaBench dev, strict, SmolLM2 vocabulary) | "
        + ", ".join(f"{k}: {v}" for k, v in sorted(c["outcomes"].items()))
        + " |",
        f"| compiles still running after {HANG_S} s (interrupted) | {', '.join(c['hangs']) or 'none'} |",
        f"| wall time for all of them | {c['seconds']:.0f} s (slowest {c['slowest'][0]:.1f} s: {c['slowest'][1]}) |",
        f"| RSS before / after / peak | {c['start_rss']:.0f} / {c['end_rss']:.0f} / {c['peak']:.0f} MiB |",
        f"| documented ceiling | {CEILING_MIB} MiB peak: {'within' if c['peak'] <= CEILING_MIB else 'EXCEEDED'} |",
        (
            f"| RSS after 100 / {args.calls} generate calls (one cached guide) | {g['after_100']:.0f} / "
            f"{g['after_all']:.0f} MiB (growth {g['after_all'] - g['after_100']:+.1f} MiB; {g['seconds']:.0f} s) |"
        ),
    ]
    (ROOT / "docs" / "reliability_memory.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
