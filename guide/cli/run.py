"""What every generating command shares: reading prompts, loading the model, printing results."""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..constraint import Constraint

SAMPLERS_AVAILABLE = ("greedy", "sample", "asap", "cd", "scd", "uscd", "ead", "mbr")
TRUNCATED_LAYERS = 4  # default amateur / small model: the main model's first layers (see samplers.models)


class UsageError(Exception):
    """Bad command-line input: exit code 2 with a one-line message."""


@dataclass
class Options:
    model: Path | None
    max_tokens: int
    temperature: float
    seed: int | None
    sampler: str
    chat: bool | None
    system: str | None
    json_out: bool
    stream: bool
    input_file: Path | None
    n: int
    amateur: Path | None
    small: Path | None
    alpha: float = 0.1
    gamma: int = 4
    threshold: float | None = None
    utility: str = "chrf"

    @classmethod
    def pick(cls, values: dict[str, Any]) -> Options:
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


def read_prompts(prompt: str | None, input_file: Path | None) -> list[str]:
    if input_file is not None:
        if prompt is not None:
            raise UsageError("give either a PROMPT or --input, not both")
        try:
            lines = input_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read --input {input_file}: {exc.strerror}") from exc
        prompts = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{input_file}:{number}:{exc.colno}: not JSON: {exc.msg}") from exc
            text = item.get("prompt") if isinstance(item, dict) else item
            if not isinstance(text, str) or not text.strip():
                raise UsageError(f"{input_file}:{number}: expected a string or {{\"prompt\": \"...\"}}")
            prompts.append(text)
        if not prompts:
            raise UsageError(f"--input {input_file} holds no prompts")
        return prompts
    if prompt == "-":
        prompt = sys.stdin.read()
    if prompt is None or not prompt.strip():
        raise UsageError("the prompt is empty")
    return [prompt]


@contextlib.contextmanager
def progress(message: str) -> Iterator[None]:
    """A spinner on stderr while `message` runs; nothing at all when stderr is not a terminal."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        yield
        return
    with console.status(message):
        yield


def _load(opts: Options):
    from transformers.utils import logging as hf_logging

    from ..models import load_default_model, load_model

    hf_logging.disable_progress_bar()  # our own spinner on stderr replaces it

    with progress("loading the model"):
        return load_default_model() if opts.model is None else load_model(opts.model)


def run_generation(make_constraint: Callable[[], Constraint], prompt: str | None, opts: Options) -> int:
    """Generate for each prompt; returns the exit code (1 when an output is incomplete)."""
    if opts.sampler not in SAMPLERS_AVAILABLE:
        known = ", ".join(SAMPLERS_AVAILABLE)
        raise UsageError(f"--sampler has to be one of {known}, not {opts.sampler!r}")
    if opts.sampler == "mbr":
        check_utility(opts)
    prompts = read_prompts(prompt, opts.input_file)
    constraint = make_constraint()
    started = time.perf_counter()
    model, tok = _load(opts)
    load_s = time.perf_counter() - started
    import torch

    from ..generate import generate_detailed

    if opts.seed is not None:
        torch.manual_seed(opts.seed)
    kwargs: dict[str, Any] = {"do_sample": opts.sampler == "sample"}
    if opts.sampler == "sample":
        kwargs.update(temperature=opts.temperature, top_k=0, top_p=1.0)
    if opts.sampler == "asap":
        return _run_asap(model, tok, constraint, prompts, opts, load_s)
    if opts.sampler in ("cd", "scd", "uscd", "ead"):
        return _run_two_models(model, tok, constraint, prompts, opts, load_s)
    if opts.sampler == "mbr":
        return _run_mbr(model, tok, constraint, prompts, opts, load_s)
    failures = 0
    for text in prompts:
        streamer = None
        if opts.stream and not opts.json_out:
            from transformers import TextStreamer

            streamer = TextStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        t0 = time.perf_counter()
        result = generate_detailed(
            model, tok, [text], constraint, max_new_tokens=opts.max_tokens, chat=opts.chat,
            system=opts.system, streamer=streamer, **kwargs,
        )[0]
        seconds = time.perf_counter() - t0
        if opts.json_out:
            print(json.dumps({
                "text": result.text, "tokens": result.token_ids, "complete": result.complete,
                "constraint": constraint.key,
                "timings": {"load_s": round(load_s, 3), "generate_s": round(seconds, 3),
                            "tokens_per_s": round(len(result.token_ids) / seconds, 2) if seconds else None},
            }, ensure_ascii=False), flush=True)
        elif streamer is None:
            print(result.text, flush=True)
        if not result.complete:
            failures += 1
            print(f"guide: --max-tokens {opts.max_tokens} ran out before the output satisfied the constraint",
                  file=sys.stderr)
    return 1 if failures else 0


def _run_asap(model, tok, constraint: Constraint, prompts: list[str], opts: Options, load_s: float) -> int:
    """Grammar-aligned sampling: --n samples per prompt, one per line (the trie is shared across them)."""
    from ..samplers.asap import ASAp

    sampler = ASAp(model, tok, constraint, temperature=opts.temperature or 1.0, max_new_tokens=opts.max_tokens,
                   chat=opts.chat, system=opts.system, seed=opts.seed)
    for text in prompts:
        t0 = time.perf_counter()
        samples = sampler.sample(text, n=opts.n)
        seconds = time.perf_counter() - t0
        for sample in samples:
            if opts.json_out:
                print(json.dumps({
                    "text": sample.text, "tokens": list(sample.token_ids), "complete": True,
                    "logprob": sample.logprob, "constraint": constraint.key,
                    "diagnostics": {"trie_nodes": sample.diagnostics.trie_nodes,
                                    "forward_passes_saved": sample.diagnostics.forward_passes_saved},
                    "timings": {"load_s": round(load_s, 3), "generate_s": round(seconds, 3)},
                }, ensure_ascii=False), flush=True)
            else:
                print(sample.text, flush=True)
    return 0


def check_utility(opts: Options) -> None:
    from ..samplers.utilities import UTILITIES

    if opts.utility not in UTILITIES:
        raise UsageError(f"--utility has to be one of {', '.join(UTILITIES)}, not {opts.utility!r}")


def _run_mbr(model, tok, constraint: Constraint, prompts: list[str], opts: Options, load_s: float) -> int:
    """MBR reranking: --n candidates per prompt, scored with --utility; prints the selected one."""
    from ..samplers.mbr import mbr_generate

    for text in prompts:
        t0 = time.perf_counter()
        result = mbr_generate(model, tok, text, constraint, n=opts.n, utility=opts.utility, temperature=opts.temperature or 1.0,
                     max_new_tokens=opts.max_tokens, chat=opts.chat, system=opts.system, seed=opts.seed)
        seconds = time.perf_counter() - t0
        if opts.json_out:
            print(json.dumps({
                "text": result.text, "index": result.index, "candidates": result.candidates,
                "expected_utility": [None if math.isnan(v) else round(float(v), 6) for v in result.expected],
                "complete": True, "sampler": "mbr", "utility": opts.utility, "utility_calls": result.utility_calls,
                "constraint": constraint.key,
                "timings": {"load_s": round(load_s, 3), "generate_s": round(seconds, 3)},
            }, ensure_ascii=False), flush=True)
        else:
            print(result.text, flush=True)
    return 0


def _second_model(model, path: Path | None):
    """The amateur / small model: a local folder, or the main model truncated (shared weights)."""
    if path is None:
        from ..samplers.models import truncated_amateur

        return truncated_amateur(model, TRUNCATED_LAYERS), None
    from ..models import load_model

    with progress("loading the second model"):
        return load_model(path)


def _run_two_models(model, tok, constraint: Constraint, prompts: list[str], opts: Options, load_s: float) -> int:
    """CD / SCD (expert = --model, amateur = --amateur), USCD (--model against the prompt without its
    demonstrations) or EAD (large = --model, small = --small)."""
    kwargs: dict[str, Any] = {"max_new_tokens": opts.max_tokens, "chat": opts.chat,
                              "do_sample": False, "seed": opts.seed}
    failures = 0
    for text in prompts:
        t0 = time.perf_counter()
        if opts.sampler == "ead":
            from ..samplers.switching import ead_generate

            small, small_tok = _second_model(model, opts.small)
            threshold = {} if opts.threshold is None else {"threshold": opts.threshold}
            out = ead_generate(small, model, tok, [text], constraint, small_tokenizer=small_tok, **threshold, **kwargs)
            extra = {"large_fraction": out.large_fraction}
        elif opts.sampler == "uscd":
            from ..samplers.contrastive import uscd_generate

            threshold = {} if opts.threshold is None else {"threshold": opts.threshold}
            out = uscd_generate(model, tok, [text], constraint, alpha=opts.alpha, **threshold, **kwargs)
            extra = {"contrast_fraction": out.contrast_fraction}
        else:
            from ..samplers.contrastive import contrastive_generate

            amateur, amateur_tok = _second_model(model, opts.amateur)
            out = contrastive_generate(model, amateur, tok, [text], constraint, amateur_tokenizer=amateur_tok,
                                       speculative=opts.sampler == "scd", alpha=opts.alpha, gamma=opts.gamma, **kwargs)
            extra = {"acceptance_rate": out.acceptance_rate} if opts.sampler == "scd" else {}
        seconds = time.perf_counter() - t0
        result_text, token_ids = out.texts[0], list(out.token_ids[0])
        complete = _accepts(constraint, model, tok, token_ids)
        if opts.json_out:
            print(json.dumps({"text": result_text, "tokens": token_ids, "complete": complete, "sampler": opts.sampler,
                              "constraint": constraint.key, "diagnostics": extra,
                              "timings": {"load_s": round(load_s, 3), "generate_s": round(seconds, 3)}},
                             ensure_ascii=False), flush=True)
        else:
            print(result_text, flush=True)
        if not complete:
            failures += 1
            print(f"guide: --max-tokens {opts.max_tokens} ran out before the output satisfied the constraint",
                  file=sys.stderr)
    return 1 if failures else 0


def _accepts(constraint: Constraint, model, tok, token_ids: list[int]) -> bool:
    """Replay the output through a fresh matcher: complete means accepted (EOS tokens skipped)."""
    from ..generate import eos_ids_of
    from ..vocab import Vocabulary

    eos = eos_ids_of(model, tok)
    vocab = Vocabulary.from_tokenizer(tok, model.config.vocab_size, eos_token_id=eos)
    matcher = constraint.compile(vocab).matcher()
    return all(matcher.advance(t) for t in token_ids if t not in eos) and matcher.is_accepting()
