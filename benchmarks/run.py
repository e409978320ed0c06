"""Run every benchmark module, print their tables and write docs/benchmarks.md.

    python benchmarks/run.py            # full run (`make bench`), rewrites docs/benchmarks.md
    python benchmarks/run.py --quick    # smoke run (~1 minute); writes no file unless --output is given

Modules: bench_regex (guide vs xgrammar / llguidance / outlines-core) and, when present,
bench_kernels. A module that exposes `run(quick=...)` returning markdown is called directly;
one with only `main()` is called with its stdout captured; anything else runs as a subprocess.
A failing module is reported in the output and the exit status, and the others still run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import importlib.metadata
import inspect
import io
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

MODULES = ("bench_regex", "bench_kernels", "bench_cfg", "bench_schema_coverage", "bench_asap", "bench_two_models", "bench_monitors")
PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "numpy",
    "xgrammar",
    "llguidance",
    "outlines_core",
    "guide-decoding",
)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _nproc() -> str:
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        )


def machine_info() -> str:
    mem = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    rows = [
        ("date", dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
        ("CPU", _cpu_model()),
        ("nproc", _nproc()),
        ("memory", mem or "unknown"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("python", platform.python_version()),
    ] + [(p, _version(p)) for p in PACKAGES]
    lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


class _Tee(io.TextIOBase):
    """Write to the real stdout and keep a copy."""

    def __init__(self, real: io.TextIOBase) -> None:
        self.real = real
        self.buf = io.StringIO()

    def write(self, s: str) -> int:
        self.real.write(s)
        self.buf.write(s)
        return len(s)

    def flush(self) -> None:
        self.real.flush()


def run_module(name: str, quick: bool, generate: bool) -> tuple[str, bool]:
    """(markdown, ok) for one benchmark module; None markdown when the module does not exist."""
    path = HERE / f"{name}.py"
    if not path.exists():
        return "", True
    try:
        module = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a broken module is reported, the others still run
        return f"```text\n{traceback.format_exc()}```", False
    try:
        run = getattr(module, "run", None)
        if callable(run):
            params = inspect.signature(run).parameters
            kwargs = {"quick": quick} if "quick" in params else {}
            if "generate" in params:
                kwargs["generate"] = generate
            tee = _Tee(sys.stdout)
            with contextlib.redirect_stdout(tee):
                result = run(**kwargs)
            if isinstance(result, str) and result.strip():
                return result, True
            return f"```text\n{tee.buf.getvalue().rstrip()}\n```", True
        main = getattr(module, "main", None)
        if callable(main):
            argv = [str(path)] + (["--quick"] if quick and "--quick" in path.read_text() else [])
            tee = _Tee(sys.stdout)
            old_argv = sys.argv
            sys.argv = argv
            try:
                with contextlib.redirect_stdout(tee):
                    result = main()
            except SystemExit as exc:
                if exc.code not in (0, None):
                    raise
                result = None
            finally:
                sys.argv = old_argv
            if isinstance(result, str) and result.strip():
                return result, True
            return f"```text\n{tee.buf.getvalue().rstrip()}\n```", True
    except Exception:  # noqa: BLE001 - a broken module is reported, the others still run
        return f"```text\n{traceback.format_exc()}```", False
    # No entry point: run it as a script.
    cmd = [sys.executable, str(path)] + (["--quick"] if quick else [])
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    body = proc.stdout.rstrip() + (f"\n{proc.stderr.rstrip()}" if proc.returncode else "")
    return f"```text\n{body}\n```", proc.returncode == 0


TITLES = {
    "bench_regex": "Regex: per-token mask + advance, compile, vocabulary, end-to-end generate",
    "bench_kernels": "Kernels",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run guide's benchmarks and write docs/benchmarks.md."
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer repeats; smoke use (no file written by default)"
    )
    parser.add_argument("--no-generate", action="store_true", help="skip the end-to-end model runs")
    parser.add_argument(
        "--only", action="append", choices=MODULES, help="run only this module (repeatable)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="markdown file to write (default: docs/benchmarks.md on a full run)",
    )
    args = parser.parse_args(argv)
    output = args.output or (None if args.quick else ROOT / "docs" / "benchmarks.md")

    info = machine_info()
    print(info, flush=True)
    sections = []
    all_ok = True
    start = time.perf_counter()
    for name in args.only or MODULES:
        if not (HERE / f"{name}.py").exists():
            print(f"\n({name}: not present, skipped)")
            continue
        print(f"\n## {TITLES.get(name, name)}\n", flush=True)
        t0 = time.perf_counter()
        body, ok = run_module(name, args.quick, not args.no_generate)
        all_ok &= ok
        if not ok:
            print(body)
        sections.append(
            f"## {TITLES.get(name, name)}\n\n`benchmarks/{name}.py`, {time.perf_counter() - t0:.0f} s.\n\n{body}\n"
        )
    total = time.perf_counter() - start
    print(f"\nall benchmarks: {total:.0f} s{'' if all_ok else ' (some FAILED, see above)'}")

    if output is not None:
        command = " ".join(["benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])])
        doc = [
            "# Benchmarks",
            "",
            (
                "Generated by `benchmarks/run.py`; do not edit by hand. Reproduce with `make bench` "
                "(or `.venv/bin/python benchmarks/run.py`; `--quick` for a smoke run). "
                "What each benchmark measures: `benchmarks/README.md`."
            ),
            "",
            (
                "Timings are wall-clock on a shared machine: compare figures within one run (every "
                "table below puts guide and the anchors side by side from the same process), not "
                "across runs."
            ),
            "",
            "## Machine",
            "",
            info,
            "",
            f"Command: `{command}`, {total:.0f} s in all.",
            "",
            *sections,
        ]
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("\n".join(doc).rstrip() + "\n")
        print(f"wrote {output}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
