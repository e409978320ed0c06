"""MBR reranking on the embedded model: accuracy and wall-clock cost on a checkable instruction set.

    python benchmarks/bench_mbr.py                 # full run (about 40 min on a busy 2-core machine), writes docs/mbr.md
    python benchmarks/bench_mbr.py --quick         # 3 tasks per kind, no file written

Tasks: benchmarks/mbr_eval/tasks.jsonl, 36 prompts we wrote with checkable answers: 12 arithmetic
word problems (correct = the last number in the output equals the answer), 12 extractions into
JSON under a JSON Schema constraint (correct = every field equals the expected value, strings
compared case-insensitively), 12 formatting instructions with verifiable rules (lowercase, word
counts, endings, bullet lines, ...).

Per task: greedy decoding, and one pool of N candidates sampled at temperature T (batched, seeded,
the schema constraint applied for JSON tasks). Every selector picks from that same pool:
"random sample" is candidate 0 (and, less noisy, the mean accuracy over all candidates, i.e. the
expected accuracy of one random sample), "MBR <utility>" is the MBR pick, "oracle" counts a task
correct when any candidate is. Utilities: exact (answer extracted: last number / canonical JSON /
normalised text, so this is self-consistency), chrF, BLEU, embedding cosine (all-MiniLM-L6-v2),
LLM judge (the embedded model itself, 1..5 read from its next-token distribution), and the judge
with reference subsampling (cost reduction). A second table measures the efficient variants
(subsample, prune) against full MBR on larger pools: utility calls, time, agreement with full MBR.

CPU, `torch.set_num_threads(1)`. Timings are wall-clock on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

TASKS = HERE / "mbr_eval" / "tasks.jsonl"
DOC = ROOT / "docs" / "mbr.md"


def load_tasks() -> list[dict]:
    return [json.loads(line) for line in TASKS.read_text().splitlines() if line.strip()]


# ---- checkers -------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9']+", text)


def _rule_ok(rule: dict, text: str) -> bool:
    t = text.strip()
    kind = rule["type"]
    if kind == "lowercase":
        return t == t.lower() and any(c.isalpha() for c in t)
    if kind == "min_words":
        return len(_words(t)) >= rule["n"]
    if kind == "max_words":
        return len(_words(t)) <= rule["n"]
    if kind == "word_count":
        return len(_words(t)) == rule["n"]
    if kind == "equals_words":
        return _words(t) == rule["words"]
    if kind == "comma_list":
        items = [p.strip() for p in t.rstrip(".").split(",")]
        return len(items) == rule["n"] and all(items) and all(len(_words(p)) <= 2 for p in items)
    if kind == "one_of":
        return t.strip(".!").lower() in rule["options"]
    if kind == "contains":
        return rule["text"].lower() in t.lower()
    if kind == "ends_with":
        return t.endswith(rule["text"])
    if kind == "starts_with":
        return t.startswith(rule["text"])
    if kind == "no_char":
        return rule["text"] not in t
    if kind == "bullets":
        lines = [line for line in t.splitlines() if line.strip()]
        return len(lines) == rule["n"] and all(line.startswith("- ") for line in lines)
    if kind == "equals_text":
        squash = (lambda s: re.sub(r"[\s.]", "", s)) if rule.get("loose") else (lambda s: s)
        return squash(t) == squash(rule["text"])
    raise ValueError(f"unknown rule {kind!r}")


def correct(task: dict, text: str) -> bool:
    from guide.samplers.utilities import last_number

    if task["kind"] == "arithmetic":
        return last_number(text) == str(task["answer"])
    if task["kind"] == "json":
        try:
            got = json.loads(text)
        except json.JSONDecodeError:
            return False
        if not isinstance(got, dict) or set(got) != set(task["expected"]):
            return False
        return all(_norm(got[k]) == _norm(v) for k, v in task["expected"].items())
    return all(_rule_ok(rule, text) for rule in task["rules"])


def _norm(value):
    return value.strip().casefold() if isinstance(value, str) else value


def answer_key(task: dict):
    """What the exact-match utility compares: the extracted answer, as self-consistency does."""
    from guide.samplers.utilities import last_number

    if task["kind"] == "arithmetic":
        return last_number
    if task["kind"] == "json":
        def canonical(text: str) -> str | None:
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return None
            if isinstance(value, dict):
                value = {k: v.strip().casefold() if isinstance(v, str) else v for k, v in value.items()}
            return json.dumps(value, sort_keys=True)
        return canonical
    return lambda text: " ".join(text.split()).casefold()


# ---- the run -------------------------------------------------------------------------------


def constraint_of(task: dict):
    if task["kind"] != "json":
        return None
    import guide

    return guide.json_schema(task["schema"])


def run_eval(model, tok, tasks: list[dict], *, n: int, temperature: float, max_new: int, judge_refs: int, utilities: list[str]):
    import numpy as np

    from guide.generate import generate_detailed
    from guide.samplers.mbr import MBR, sample_candidates
    from guide.samplers.utilities import Embedding, ExactMatch, Judge, make_utility

    shared = {"embedding": Embedding(), "judge": Judge(model, tok)}
    rows = {name: {"correct": 0, "seconds": 0.0, "calls": 0} for name in
            ["greedy", "random sample (candidate 0)", "random sample (mean over N)", "oracle (any of N)"]
            + [f"MBR {u}" for u in utilities] + ([f"MBR judge, {judge_refs} refs (subsample)"] if "judge" in utilities else [])}
    per_kind: dict[str, dict[str, float]] = {}
    log = []
    sample_s_total = 0.0
    for k, task in enumerate(tasks):
        budget = max_new * 2 if task["kind"] == "json" else max_new
        constraint = constraint_of(task)
        t0 = time.perf_counter()
        greedy = generate_detailed(model, tok, [task["prompt"]], constraint, max_new_tokens=budget, do_sample=False)[0]
        g_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        pool = sample_candidates(model, tok, task["prompt"], constraint, n=n, temperature=temperature,
                                 max_new_tokens=budget, seed=1000 + k)
        s_s = time.perf_counter() - t0
        sample_s_total += s_s
        texts = [g.text for g in pool]
        ok = [correct(task, t) and g.complete for t, g in zip(texts, pool)]
        eligible = [g.complete for g in pool]
        picks = {"greedy": (greedy.complete and correct(task, greedy.text), g_s, 0),
                 "random sample (candidate 0)": (ok[0], s_s / n, 0),
                 "random sample (mean over N)": (float(np.mean(ok)), s_s / n, 0),
                 "oracle (any of N)": (any(ok), s_s, 0)}
        if any(eligible):
            for name in utilities:
                utility = ExactMatch(answer_key(task)) if name == "exact" else shared.get(name) or make_utility(name)
                variants = [(f"MBR {name}", MBR(utility, progress=False))]
                if name == "judge":
                    variants.append((f"MBR judge, {judge_refs} refs (subsample)",
                                     MBR(utility, method="subsample", references=judge_refs, seed=k, progress=False)))
                for label, sampler in variants:
                    before = utility.calls
                    t0 = time.perf_counter()
                    result = sampler.select(texts, source=task["prompt"], eligible=eligible)
                    picks[label] = (ok[result.index], s_s + time.perf_counter() - t0, utility.calls - before)
        else:  # no candidate satisfied the constraint: every selector fails this task
            for label in rows:
                picks.setdefault(label, (False, s_s, 0))
        for label, (good, seconds, calls) in picks.items():
            rows[label]["correct"] += float(good)
            rows[label]["seconds"] += seconds
            rows[label]["calls"] += calls
            per_kind.setdefault(label, {}).setdefault(task["kind"], 0.0)
            per_kind[label][task["kind"]] += float(good)
        log.append({"id": task["id"], "greedy": greedy.text, "candidates": texts, "ok": ok,
                    "picks": {k2: v[0] for k2, v in picks.items()}})
        print(f"[{k + 1}/{len(tasks)}] {task['id']}: greedy={int(picks['greedy'][0])} "
              f"sample-mean={np.mean(ok):.2f} " + " ".join(f"{lab.split()[1]}={int(v[0])}" for lab, v in picks.items()
                                                          if lab.startswith("MBR")), flush=True)
    return rows, per_kind, log


def run_costs(model, tok, tasks: list[dict], *, n: int, temperature: float, max_new: int, judge_n: int, judge_tasks: int):
    """Efficient variants against full MBR: utility calls, selection time, agreement with the full pick."""
    from guide.samplers.mbr import MBR, sample_candidates
    from guide.samplers.utilities import ChrF, Embedding, Judge

    out = []
    plans = [("chrf", ChrF(), n, tasks), ("embedding", Embedding(), n, tasks), ("judge", Judge(model, tok), judge_n, tasks[:judge_tasks])]
    pools: dict[tuple[str, int], list[str]] = {}
    for name, utility, size, subset in plans:
        stats = {m: {"calls": 0, "seconds": 0.0, "agree": 0} for m in ("full", "subsample", "prune")}
        for k, task in enumerate(subset):
            key = (task["id"], size)
            if key not in pools:
                gens = sample_candidates(model, tok, task["prompt"], constraint_of(task), n=size,
                                         temperature=temperature, max_new_tokens=max_new, seed=2000 + k)
                pools[key] = [g.text for g in gens]
            texts = pools[key]
            chosen = {}
            for method in ("full", "subsample", "prune"):
                sampler = MBR(utility, method=method, references=max(2, size // 4), seed=k, progress=False)
                if name == "embedding":
                    utility._cache.clear()  # each method pays for its own encoding
                before = utility.calls
                t0 = time.perf_counter()
                result = sampler.select(texts, source=task["prompt"])
                stats[method]["seconds"] += time.perf_counter() - t0
                stats[method]["calls"] += utility.calls - before
                chosen[method] = result.index
            for method, s in stats.items():
                s["agree"] += int(texts[chosen[method]] == texts[chosen["full"]])
        out.append((name, size, len(subset), stats))
        print(f"cost {name} N={size}: " + ", ".join(f"{m} {s['calls']} calls {s['seconds']:.2f}s" for m, s in stats.items()), flush=True)
    return out


def markdown(rows, per_kind, costs, tasks, args, load_s: float, sample_s: float) -> str:
    total = len(tasks)
    kinds = sorted({t["kind"] for t in tasks})
    counts = {k: sum(t["kind"] == k for t in tasks) for k in kinds}
    lines = [
        f"| selector | accuracy (of {total}) | " + " | ".join(f"{k} (of {counts[k]})" for k in kinds)
        + " | utility calls | wall-clock s (total) |",
        "|---|---|" + "---|" * len(kinds) + "---|---|",
    ]
    for label, r in rows.items():
        cells = " | ".join(f"{per_kind.get(label, {}).get(k, 0.0):.2f}".rstrip("0").rstrip(".") for k in kinds)
        lines.append(f"| {label} | {r['correct'] / total:.3f} | {cells} | {r['calls']} | {r['seconds']:.1f} |")
    cost_lines = ["| utility | N | tasks | method | utility calls | calls vs full | selection s | same pick as full |",
                  "|---|---|---|---|---|---|---|---|"]
    for name, size, count, stats in costs:
        full = stats["full"]["calls"] or 1
        for method, s in stats.items():
            cost_lines.append(f"| {name} | {size} | {count} | {method} | {s['calls']} | {s['calls'] / full:.2f} | "
                              f"{s['seconds']:.2f} | {s['agree']}/{count} |")
    return "\n".join(lines), "\n".join(cost_lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 tasks per kind, fewer utilities checked, no file")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--judge-refs", type=int, default=2)
    parser.add_argument("--cost-n", type=int, default=16)
    parser.add_argument("--cost-tasks", type=int, default=4)
    parser.add_argument("--cost-judge-n", type=int, default=6)
    parser.add_argument("--cost-judge-tasks", type=int, default=1)
    parser.add_argument("--utilities", default="exact,chrf,bleu,embedding,judge")
    parser.add_argument("--costs-only", action="store_true", help="redo the cost table, reuse mbr_eval/last_run.json")
    parser.add_argument("--output", type=Path, default=None, help=f"markdown file (full run default: {DOC})")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from guide.models import load_default_model

    tasks = load_tasks()
    if args.quick:
        tasks = [t for kind in ("arithmetic", "json", "format") for t in [x for x in tasks if x["kind"] == kind][:3]]
    t0 = time.perf_counter()
    model, tok = load_default_model()
    load_s = time.perf_counter() - t0
    utilities = args.utilities.split(",")
    started = time.perf_counter()
    saved = HERE / "mbr_eval" / "last_run.json"
    if args.costs_only:  # reuse the accuracy table of the last full run; redo only the cost table
        data = json.loads(saved.read_text())
        rows, per_kind, log = data["rows"], data["per_kind"], data["log"]
    else:
        rows, per_kind, log = run_eval(model, tok, tasks, n=args.n, temperature=args.temperature,
                                       max_new=args.max_new_tokens, judge_refs=args.judge_refs, utilities=utilities)
        if not args.quick:  # the committed file belongs to the full run behind docs/mbr.md
            saved.write_text(json.dumps({"rows": rows, "per_kind": per_kind, "log": log}, indent=1, ensure_ascii=False))
    costs = run_costs(model, tok, tasks[: 3 if args.quick else args.cost_tasks], n=min(8, args.cost_n) if args.quick else args.cost_n,
                      temperature=args.temperature, max_new=args.max_new_tokens, judge_n=args.cost_judge_n,
                      judge_tasks=1 if args.quick else args.cost_judge_tasks)
    print(f"benchmark time: {(time.perf_counter() - started) / 60:.1f} min")
    table, cost_table = markdown(rows, per_kind, costs, tasks, args, load_s, 0.0)
    print(table)
    print()
    print(cost_table)
    output = args.output or (None if args.quick else DOC)
    if output is not None:
        write_doc(output, table, cost_table, rows, log, args)
        print(f"wrote {output}")


def paired_interval(log: list[dict], label: str, *, draws: int = 10000) -> tuple[float, float, float]:
    """Mean per-task accuracy difference (selector - one random sample) and a 95% bootstrap interval over tasks."""
    import numpy as np

    diff = np.array([float(t["picks"][label]) - float(np.mean(t["ok"])) for t in log])
    means = diff[np.random.default_rng(0).integers(0, len(diff), size=(draws, len(diff)))].mean(axis=1)
    return float(diff.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def write_doc(path: Path, table: str, cost_table: str, rows, log: list[dict], args) -> None:
    total = len(log)
    mean = rows["random sample (mean over N)"]["correct"] / total
    first = rows["random sample (candidate 0)"]["correct"] / total
    verdict = []
    for label, r in rows.items():
        if label.startswith("MBR") or label == "greedy":
            acc = r["correct"] / total
            diff, low, high = paired_interval(log, label)
            word = "beats" if acc > mean else ("ties" if acc == mean else "does not beat")
            sure = "the interval excludes 0" if low > 0 or high < 0 else "the interval includes 0: not significant"
            verdict.append(f"- {label}: {acc:.3f}, {word} random sampling ({mean:.3f} expected, {first:.3f} for "
                           f"candidate 0); paired difference {diff:+.3f}, 95% bootstrap interval over tasks "
                           f"[{low:+.3f}, {high:+.3f}] ({sure}).")
    template = (HERE / "mbr_eval" / "doc_template.md").read_text()
    text = template.format(
        command=f"python benchmarks/bench_mbr.py --n {args.n} --temperature {args.temperature} "
        f"--max-new-tokens {args.max_new_tokens} --judge-refs {args.judge_refs} --cost-n {args.cost_n} "
        f"--cost-tasks {args.cost_tasks}",
        n=args.n, temperature=args.temperature, max_new=args.max_new_tokens, total=total,
        table=table, cost_table=cost_table, verdict="\n".join(verdict),
    )
    path.write_text(text)


if __name__ == "__main__":
    main()
