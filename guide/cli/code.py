"""`guide code`: continue a Python file under static-analysis monitors (jedi, the `code` extra)."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import typer

from .run import Options, UsageError

MONITOR_CHOICES = {"member": ("member",), "call": ("call",), "name": ("name",), "all": ("member", "call", "name")}
# the spellings of the CLI issue: --monitor member-access,arity,names
MONITOR_ALIASES = {"member-access": "member", "arity": "call", "names": "name"}


def parse_monitors(value: str) -> tuple[str, ...] | None:
    """`member`, `all`, or a comma list (`member-access,arity`); None when a name is unknown."""
    kinds: list[str] = []
    for part in (p.strip() for p in value.split(",")):
        choice = MONITOR_CHOICES.get(MONITOR_ALIASES.get(part, part))
        if choice is None:
            return None
        kinds += [k for k in choice if k not in kinds]
    return tuple(kinds) or None


def _default_path(prefix: Path, project: Path) -> str:
    """PREFIX's path inside the project (so that its relative imports resolve), else its name."""
    if str(prefix) == "-":
        return "main.py"
    full, root = prefix.resolve(), project.resolve()
    return str(full.relative_to(root)) if root in full.parents else prefix.name


@lru_cache(maxsize=1)
def _python_grammar():
    from ..grammars.cfg import builtin

    return builtin("python")


def _with_grammar(constraint, text: str):
    """`constraint` & the Python grammar's continuation of `text` (EOS anywhere: --line or
    --max-tokens decide the length, as before). The grammar starts at the top of a file, so it
    expresses the context exactly when all of PREFIX lies in its subset; otherwise PREFIX is
    continued as before, and stderr says why."""
    python = _python_grammar()
    where = python.prefix_error(text)
    if where is not None:
        typer.echo(
            f"note: PREFIX is outside the Python grammar's subset at {where} (see docs/grammars.md); "
            "continuing without the grammar",
            err=True,
        )
        return constraint
    return constraint & python.continuation(text, open_end=True)


def code(
    prefix: Annotated[Path, typer.Argument(help="The code before the cursor: a .py file ('-' reads stdin); its final newline is dropped.")],
    root: Annotated[
        Path | None, typer.Option("--root", "--project", help="Project folder of Python files (default: PREFIX's folder).")
    ] = None,
    lang: Annotated[str, typer.Option("--lang", help="The language of PREFIX: python (the only one monitors support).")] = "python",
    path: Annotated[
        str | None, typer.Option("--path", help="The file being written, relative to --root (default: PREFIX's place in it, else its name).")
    ] = None,
    monitor: Annotated[str, typer.Option(
        "--monitor", help="member | call | name | all, or a comma list (also member-access, arity, names)."
    )] = "member",
    line: Annotated[bool, typer.Option("--line/--free", help="Stop at the end of the current line (a regex & the monitors).")] = True,
    syntax: Annotated[bool, typer.Option(
        "--grammar/--no-grammar",
        help="Keep PREFIX + the text the start of a Python file of builtin('python') (skipped, with a note, "
        "when PREFIX is outside that grammar's subset).",
    )] = True,
    model: Annotated[Path | None, typer.Option("--model", help="A local Hugging Face model folder (default: the embedded SmolLM2).")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Most new tokens to generate.")] = 32,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="With --sampler sample.")] = 1.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed for sampling.")] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="greedy | sample.")] = "greedy",
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object: text, tokens, timings.")] = False,
) -> None:
    """Continue PREFIX (raw completion, no chat template) while the monitors veto names that do not exist."""
    from .app import _fail, _run

    try:
        text = sys.stdin.read() if str(prefix) == "-" else prefix.read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot read PREFIX {prefix}: {exc.strerror}", 2)
    if text.endswith("\n") and not text.endswith("\n\n"):
        text = text[:-1]  # the file's final newline: the cursor sits at the end of its last line
    if lang.lower() != "python":
        _fail(f"--lang {lang!r}: monitors analyse Python only (jedi)", 2)
    kinds = parse_monitors(monitor)
    if kinds is None:
        known = ", ".join([*MONITOR_CHOICES, *MONITOR_ALIASES])
        _fail(f"--monitor has to be one of {known} (or a comma list), not {monitor!r}", 2)
    if sampler not in ("greedy", "sample"):
        _fail(f"--sampler has to be greedy or sample for `guide code`, not {sampler!r}", 2)
    project = root if root is not None else (Path.cwd() if str(prefix) == "-" else prefix.resolve().parent)
    file = path if path is not None else _default_path(prefix, project)

    def make():
        from .. import regex
        from ..monitors import monitors

        try:
            constraint = monitors(project, text, path=file, kinds=kinds)
        except FileNotFoundError as exc:  # pragma: no cover - Monitor raises GuideError first
            raise UsageError(str(exc)) from exc
        if syntax:
            constraint = _with_grammar(constraint, text)
        return regex(r"[^\n]*\n") & constraint if line else constraint

    opts = Options(model=model, max_tokens=max_tokens, temperature=temperature, seed=seed, sampler=sampler, chat=False,
                   system=None, json_out=json_out, stream=False, input_file=None, n=1, amateur=None, small=None)
    _run(make, text, opts)
