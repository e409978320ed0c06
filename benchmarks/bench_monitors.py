"""Monitor-guided decoding on the code evaluation set: the embedded model with and without monitors.

    python benchmarks/bench_monitors.py [--quick]    # full run rewrites docs/monitors.md

Tasks: benchmarks/code_eval/tasks.jsonl (made by code_eval/make_tasks.py from the client files of
three small projects with unguessable member names). Each prompt is a raw file prefix ending
right after `obj.` (member task) or `f(` (call task); the model (embedded SmolLM2-135M-Instruct,
no chat template, greedy, CPU, `torch.set_num_threads(1)`) writes up to MAX_NEW tokens, once
unconstrained and once under `guide.monitors.monitors(root, prefix, kinds=("member", "call"))`.

Checks use the real objects (the project is imported; no jedi): a member task is valid when the
first generated identifier is an attribute of the owner (class attributes, `self.x` assignments
in its source, or module members); a call task is valid when the generated arguments bind to
the callee's `inspect.signature` (bind_partial while the call is still open). Next-identifier
match (NIM) compares the first generated identifier (member) or first lexeme (call) with the
hidden answer. Also measured: a warm jedi query per trigger and the monitors' mask + advance
cost on tokens that trigger nothing.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import json
import re
import statistics
import sys
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

EVAL = HERE / "code_eval"
DOC = ROOT / "docs" / "monitors.md"
MAX_NEW = 12
KINDS = ("member", "call")
REPRODUCE = "python benchmarks/bench_monitors.py   # or: python benchmarks/run.py --only bench_monitors"
_IDENT = re.compile(r"[A-Za-z_]\w*")
_LEXEME = re.compile(r"\s*(\w+|\"[^\"]*\"?|'[^']*'?|\S)")


NOTES = """How to read it:

- "valid names" is the share of generations whose first name exists (member tasks) or whose
  arguments fit the signature (call tasks). With the member monitor every first identifier
  after `obj.` is a real member; the next-identifier match rises much less, because these
  names cannot be guessed and a 135M model, once held to real members, still often picks the
  wrong one (the sample table below shows it).
- Call tasks: the call monitor restricts an argument slot once the positional parameters are
  used up (then only keyword names, `)` and `**` may follow), forbids `)` right after `(` or
  `,` while a required argument is missing, and forbids a `)` right after an argument while two
  or more required parameters are still missing. It does not check what an argument
  expression names (that is the name-resolution monitor, not run here), and with one required
  parameter left it cannot tell whether the argument being typed fills it. The call tasks
  that still fail under the monitors are listed at the end.
- ms / token is wall-clock per generated token with the prompt's prefill included, on a shared
  2-core machine whose load changed during the run: compare the overhead rows, not these two.
- The jedi rows are wall-clock on the same loaded machine. "member" is the monitor's real path
  (one type inference, then the member list of a type already seen); "member, new type" is a
  full jedi completion every time. ECOSYSTEM.md measured a warm completion at 15.6 ms median
  on an idle machine of this class.
"""


def load_tasks() -> list[dict]:
    return [json.loads(line) for line in (EVAL / "tasks.jsonl").read_text().splitlines() if line.strip()]


def _import_owner(task: dict):
    root = str(EVAL / "projects" / task["project"])
    if root not in sys.path:
        sys.path.insert(0, root)
    module_name, _, qualname = task["owner"].partition(":")
    obj = importlib.import_module(module_name)
    for part in filter(None, qualname.split(".")):
        obj = getattr(obj, part)
    return obj


def runtime_members(task: dict) -> set[str]:
    """Names that exist on the owner at run time: dir() plus `self.x = ...` in the class source."""
    owner = _import_owner(task)
    names = set(dir(owner))
    if inspect.isclass(owner):
        tree = ast.parse(textwrap.dedent(inspect.getsource(owner)))
        for node in ast.walk(tree):
            is_self = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
            if is_self and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    else:  # a module: its submodules are importable members too
        path = Path(inspect.getfile(owner)).parent
        names |= {p.stem for p in path.glob("*.py")} if owner.__name__ == path.name else set()
    return names


def _split_args(text: str) -> tuple[list[str], bool]:
    """Top-level arguments of a call's text (after `(`), and whether the call was closed."""
    depth, current, args, quote = 0, [], [], None
    for ch in text:
        if quote:
            current.append(ch)
            quote = None if ch == quote else quote
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                args.append("".join(current).strip())
                return [a for a in args if a], True
            depth -= 1
        elif ch == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    args.append("".join(current).strip())
    return [a for a in args if a], False


def call_binds(task: dict, generated: str) -> bool:
    """The generated arguments fit the callee's signature (arity and keyword names)."""
    func = _import_owner(task)
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    if task["instance"]:
        sig = sig.replace(parameters=params[1:])
    args, closed = _split_args(generated)
    if not closed and args:
        args = args[:-1]  # the last argument may still be unfinished
    positional, keywords = 0, {}
    for arg in args:
        m = re.match(r"([A-Za-z_]\w*)\s*=(?!=)", arg)
        if m:
            keywords[m.group(1)] = None
        elif arg.startswith("*"):
            return True  # unpacking: not checkable statically
        else:
            positional += 1
    try:
        (sig.bind if closed else sig.bind_partial)(*([None] * positional), **keywords)
    except TypeError:
        return False
    return True


def score(task: dict, generated: str) -> tuple[bool, bool]:
    """(valid, next-identifier match) of one generation."""
    if task["kind"] == "member":
        m = _IDENT.match(generated)
        name = m.group() if m else None
        return name is not None and name in runtime_members(task), name == task["expected"]
    first = _LEXEME.match(generated)
    want = _LEXEME.match(task["expected"])
    nim = bool(first and want and first.group(1) == want.group(1))
    return call_binds(task, generated), nim


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def jedi_query_times(tasks: list[dict]) -> dict[str, list[float]]:
    """Warm jedi answers per trigger in ms (no answer cache: each query builds a new jedi Script).

    "member" is the monitor's real path in one pass over the tasks (the member list of a type
    seen before is reused after a ~10 ms type inference); "member, new type" clears that cache
    first, so every query is a full jedi completion.
    """
    from guide.monitors.base import Monitor
    from guide.monitors.jedi_backend import backend_for

    out: dict[str, list[float]] = {"member": [], "member, new type": [], "call": []}
    for task in tasks:  # warm jedi on every project and file first
        spec = Monitor(task["kind"], EVAL / "projects" / task["project"], task["prefix"], path=task["path"])
        getattr(backend_for(spec.root), f"_{task['kind']}")(task["prefix"], spec.cursor_path)
    for label in ("member, new type", "call", "member"):
        for task in tasks:
            if task["kind"] != label.split(",")[0]:
                continue
            spec = Monitor(task["kind"], EVAL / "projects" / task["project"], task["prefix"], path=task["path"])
            backend = backend_for(spec.root)
            if label != "member":
                backend._members.clear()
            t0 = time.perf_counter()
            getattr(backend, f"_{task['kind']}")(task["prefix"], spec.cursor_path)
            out[label].append((time.perf_counter() - t0) * 1e3)
        if label == "call":
            for task in tasks:
                backend_for((EVAL / "projects" / task["project"]).resolve())._members.clear()
    return out


def non_trigger_overhead(vocab, tok, repeats: int) -> tuple[float, float, float, float]:
    """(p50, p99) µs of fill_bitmask + advance on tokens that trigger nothing, monitors vs a bare copy."""
    import numpy as np

    from guide.bitmask import bitmask_width
    from guide.monitors import monitors

    root = EVAL / "projects" / "quarry"
    code = "total = 0\nfor item in items:\n    total += item\n    if total > 10:\n        break\n"
    ids = tok.encode(code, add_special_tokens=False)
    spec = monitors(root, "", path="yard.py", kinds=KINDS)
    compiled = spec.compile(vocab)
    row = np.zeros((1, bitmask_width(vocab.model_width)), dtype=np.int32)
    full = np.full_like(row[0], -1)
    ours, base = [], []
    for _ in range(repeats):
        m = compiled.matcher()
        for t in ids:
            t0 = time.perf_counter_ns()
            m.fill_bitmask(row, 0)
            assert m.advance(t)
            ours.append((time.perf_counter_ns() - t0) / 1e3)
            t0 = time.perf_counter_ns()
            row[0] = full
            base.append((time.perf_counter_ns() - t0) / 1e3)
        assert all(p.state is None for p in m.parts), "the overhead text must not trigger a monitor"
    return _percentile(ours, 0.5), _percentile(ours, 0.99), _percentile(base, 0.5), _percentile(base, 0.99)


def run(quick: bool = False, write: bool | None = None) -> str:
    import torch

    from guide.generate import eos_ids_of, generate_detailed
    from guide.models import load_default_model
    from guide.monitors import monitors
    from guide.vocab import Vocabulary

    torch.set_num_threads(1)
    tasks = load_tasks()
    if quick:
        tasks = tasks[::6]
    model, tok = load_default_model()
    vocab = Vocabulary.from_tokenizer(tok, model.config.vocab_size, eos_token_id=eos_ids_of(model, tok))
    rows: dict[str, dict] = {}
    per_task = []
    for config in ("plain", "monitors"):
        stats = {"valid": 0, "nim": 0, "tokens": 0, "seconds": 0.0, "by_kind": {k: [0, 0, 0] for k in KINDS},
                 "diagnostics": 0}
        for task in tasks:
            constraint = None
            if config == "monitors":
                constraint = monitors(EVAL / "projects" / task["project"], task["prefix"], path=task["path"], kinds=KINDS)
            t0 = time.perf_counter()
            result = generate_detailed(model, tok, [task["prefix"]], constraint, max_new_tokens=MAX_NEW,
                                       chat=False, do_sample=False, on_dead_end="eos")[0]
            stats["seconds"] += time.perf_counter() - t0
            stats["tokens"] += max(len(result.token_ids), 1)
            valid, nim = score(task, result.text)
            stats["valid"] += valid
            stats["nim"] += nim
            kind = stats["by_kind"][task["kind"]]
            kind[0] += 1
            kind[1] += valid
            kind[2] += nim
            per_task.append((config, task["id"], result.text, valid, nim))
        rows[config] = stats
        n = len(tasks)
        print(f"{config:>9}: valid {stats['valid']}/{n}, NIM {stats['nim']}/{n}, "
              f"{1e3 * stats['seconds'] / stats['tokens']:.1f} ms/token", flush=True)
    query = jedi_query_times(tasks)
    p50, p99, b50, b99 = non_trigger_overhead(vocab, tok, 3 if quick else 30)
    n = len(tasks)
    counts = ", ".join(f"{sum(t['kind'] == k for t in tasks)} {k}" for k in KINDS)
    lines = [
        (f"Tasks: {n} ({counts}) over 3 projects "
         f"in `benchmarks/code_eval/`; embedded SmolLM2-135M-Instruct, raw file prefix as the prompt, greedy, "
         f"max {MAX_NEW} new tokens, CPU, 1 torch thread. Reproduce: `{REPRODUCE}`."),
        "",
        "| decoding | valid names (all) | member: valid | member: NIM | call: binds | call: first lexeme | NIM (all) | ms / token |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for config, s in rows.items():
        mk, ck = s["by_kind"]["member"], s["by_kind"]["call"]

        def pct(a: int, b: int) -> str:
            return f"{100 * a / b:.1f}% ({a}/{b})" if b else "n/a"

        lines.append(
            f"| {'unconstrained' if config == 'plain' else 'monitors (member + call)'} | {pct(s['valid'], n)} | "
            f"{pct(mk[1], mk[0])} | {pct(mk[2], mk[0])} | {pct(ck[1], ck[0])} | {pct(ck[2], ck[0])} | "
            f"{pct(s['nim'], n)} | {1e3 * s['seconds'] / s['tokens']:.1f} |"
        )
    lines += [
        "",
        "| overhead | p50 | p95 / p99 | max | target |",
        "|---|---|---|---|---|",
    ]
    for kind, values in query.items():
        if values:
            lines.append(f"| warm jedi query per trigger: {kind} (ms, n={len(values)}) | {statistics.median(values):.1f} | "
                         f"{_percentile(values, 0.95):.1f} (p95) | {max(values):.1f} | ≤ 30 ms |")
    lines.append(f"| mask + advance on a non-trigger token, member & call monitors (µs) | {p50:.1f} | {p99:.1f} (p99) | | ≤ 100 µs |")
    lines.append(f"| the same row copy without monitors, for scale (µs) | {b50:.1f} | {b99:.1f} (p99) | | |")
    markdown = "\n".join(lines)
    print(markdown)
    if write if write is not None else not quick:
        samples = ["", "Sample outputs (first 12 member tasks):", "", "| task | expected | unconstrained | monitors |", "|---|---|---|---|"]
        outputs = {(c, i): (text, v) for c, i, text, v, _ in per_task}

        def cell(s: str) -> str:
            return "`" + s.replace("\n", "⏎").replace("|", "\\|") + "`"

        for task in [t for t in tasks if t["kind"] == "member"][:12]:
            plain, _ = outputs[("plain", task["id"])]
            guided, _ = outputs[("monitors", task["id"])]
            samples.append(f"| {task['id']} | `{task['expected']}` | {cell(plain)} | {cell(guided)} |")
        failed = [(i, text) for c, i, text, v, _ in per_task if c == "monitors" and not v]
        samples += ["", "Tasks still invalid under the monitors:", "", "| task | output |", "|---|---|"]
        samples += [f"| {i} | {cell(text)} |" for i, text in failed] or ["| (none) | |"]
        DOC.write_text(
            "# Monitor-guided decoding: evaluation\n\n"
            "Written by `benchmarks/bench_monitors.py`. "
            + (__doc__ or "").split("\n\n", 2)[2].strip().replace("MAX_NEW", str(MAX_NEW)) + "\n\n"
            + markdown + "\n\n" + NOTES + "\n" + "\n".join(samples) + "\n"
        )
        print(f"wrote {DOC}")
    return markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every 6th task; writes no file")
    args = parser.parse_args()
    run(quick=args.quick)


if __name__ == "__main__":
    main()
