"""`guide tools` (tool calls under the ToolDec-style guide) and `guide json --reason` (CRANE)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from ..constraint import Constraint
from .run import UsageError, _load, read_prompts

ReasonOpt = Annotated[
    bool, typer.Option("--reason/--no-reason", help="Free reasoning in <think>...</think> first, then the constrained answer.")
]
MaxReasoningOpt = Annotated[
    int, typer.Option("--max-reasoning-tokens", min=0, help="With --reason: reasoning tokens before </think> is forced.")
]


def reasoning_factory(make: Callable[[], Constraint], cap: int) -> Callable[[], Constraint]:
    def build() -> Constraint:
        from ..reasoning import reasoning_then

        return reasoning_then(make(), max_reasoning_tokens=cap)

    return build


def _read_tools(path: Path) -> list:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read --tools {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}:{exc.colno}: the tools file is not JSON: {exc.msg}") from exc
    if isinstance(data, dict) and "tools" in data:
        data = data["tools"]
    if not isinstance(data, list):
        raise UsageError(f"{path}: expected a JSON list of tools (or {{\"tools\": [...]}})")
    return data


def tools_command(
    tools_file: Annotated[Path, typer.Option("--tools", help="A JSON file: a list of tools (OpenAI style or {name, parameters}).")],
    prompt: Annotated[str | None, typer.Argument(help="The prompt; '-' reads it from stdin (omit it with --input).")] = None,
    text: Annotated[bool, typer.Option("--text/--no-text", help="Allow a plain-text answer instead of tool calls.")] = True,
    format: Annotated[str, typer.Option("--format", help="auto (from the chat template) | json | hermes.")] = "auto",
    strict: Annotated[bool, typer.Option("--strict/--lenient", help="Unsupported schema keywords: error or warn.")] = True,
    model: Annotated[Path | None, typer.Option("--model", help="A local Hugging Face model folder.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Most new tokens to generate.")] = 256,
    max_calls: Annotated[int | None, typer.Option("--max-calls", min=1, help="The most calls in one answer.")] = None,
    input_file: Annotated[Path | None, typer.Option("--input", help="A JSONL file of prompts.")] = None,
) -> None:
    """Answer with tool calls (names from the list, arguments valid for their schema) or plain text.

    Prints one JSON object per prompt: {"text", "tool_calls": [{"name", "arguments"}], "complete"}.
    """
    from .app import _guarded

    _guarded(lambda: _tools(tools_file, prompt, text, format, strict, model, max_tokens, max_calls, input_file))


def _tools(tools_file, prompt, allow_text, fmt, strict, model_dir, max_tokens, max_calls, input_file) -> int:
    from ..tool_calls import Tools, detect_format

    if fmt not in ("auto", "json", "hermes"):
        raise UsageError(f"--format has to be auto, json or hermes, not {fmt!r}")
    specs = _read_tools(tools_file)
    prompts = read_prompts(prompt, input_file)
    options = {"allow_text": allow_text, "strict": strict, "max_calls": max_calls}
    constraint = Tools(specs, format="json" if fmt == "auto" else fmt, **options)  # errors before the model loads
    from .run import Options

    opts = Options(model_dir, max_tokens, 0.0, None, "greedy", None, None, True, False, input_file, 1, None, None)
    model, tok = _load(opts)
    if fmt == "auto":
        constraint = Tools(specs, format=detect_format(tok), **options)
    from ..generate import generate_detailed

    failures = 0
    for user in prompts:
        t0 = time.perf_counter()
        result = generate_detailed(model, tok, [constraint.prompt(tok, user)], constraint, max_new_tokens=max_tokens, chat=False)[0]
        calls = [{"name": c.name, "arguments": c.arguments} for c in constraint.parse(result.text)] if result.complete else []
        print(json.dumps({"text": result.text, "tool_calls": calls, "complete": result.complete,
                          "generate_s": round(time.perf_counter() - t0, 3)}, ensure_ascii=False), flush=True)
        if not result.complete:
            failures += 1
            print(f"guide: --max-tokens {max_tokens} ran out before the tool calls were complete", file=sys.stderr)
    return 1 if failures else 0
