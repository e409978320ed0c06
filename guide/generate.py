"""`guide.generate`: one call from prompt to constrained text, with the chat template applied for chat models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

from .constraint import Constraint
from .errors import GuideError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from .processor import DeadEndPolicy


class IncompleteGenerationError(GuideError, RuntimeError):
    """`max_new_tokens` ran out before the constrained text was complete."""


def eos_ids_of(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Every EOS id the model may stop on: generation config (int or list) plus the tokenizer's."""
    found: list[int] = []
    for source in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if source is None:
            continue
        found.extend([source] if isinstance(source, int) else list(source))
    return list(dict.fromkeys(found))


def format_prompt(
    tokenizer: PreTrainedTokenizerBase, prompt: str, *, chat: bool | None = None, system: str | None = None
) -> str:
    """The prompt as the model should see it: chat-templated when the tokenizer has a template."""
    use_chat = bool(tokenizer.chat_template) if chat is None else chat
    if not use_chat:
        if system is not None:
            raise ValueError("`system` needs the chat template; pass chat=True or drop `system`")
        return prompt
    if not tokenizer.chat_template:
        raise ValueError("chat=True, but the tokenizer has no chat template")
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user", "content": prompt}
    ]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


@dataclass(frozen=True)
class Generation:
    """One generated sequence: its text, token ids, and whether the constraint accepts it as is
    (False only when `max_new_tokens` cut a constrained text short)."""

    text: str
    token_ids: list[int]
    complete: bool


@overload
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str, constraint: Constraint | None, **kwargs: Any) -> str: ...
@overload
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: Sequence[str], constraint: Constraint | Sequence[Constraint] | None, **kwargs: Any) -> list[str]: ...


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str | Sequence[str],
    constraint: Constraint | Sequence[Constraint] | None,
    *,
    max_new_tokens: int = 128,
    chat: bool | None = None,
    system: str | None = None,
    on_dead_end: DeadEndPolicy = "raise",
    allow_incomplete: bool = False,
    **generate_kwargs: Any,
) -> str | list[str]:
    """Generate text under `constraint` (None: unconstrained) and return the new text.

    A list of prompts is run as one left-padded batch and gives a list of texts. Extra keyword
    arguments go to `model.generate` (e.g. `do_sample=True`, `num_beams=3`).

    Raises:
        IncompleteGenerationError: `max_new_tokens` ended the text before the constraint was
            satisfied (pass `allow_incomplete=True` to get the partial text instead).
        GuideDeadEnd: see `guide.constrain`.
    """
    single = isinstance(prompt, str)
    results = generate_detailed(
        model, tokenizer, [prompt] if single else list(prompt), constraint,
        max_new_tokens=max_new_tokens, chat=chat, system=system, on_dead_end=on_dead_end,
        **generate_kwargs,
    )
    for result in results:
        if not result.complete and not allow_incomplete:
            raise IncompleteGenerationError(
                "max_new_tokens ran out before the constraint was satisfied; partial text: "
                f"{result.text!r} (raise `max_new_tokens`, or pass allow_incomplete=True)"
            )
    texts = [r.text for r in results]
    return texts[0] if single and len(texts) == 1 else texts


def generate_detailed(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    constraint: Constraint | Sequence[Constraint] | None,
    *,
    max_new_tokens: int = 128,
    chat: bool | None = None,
    system: str | None = None,
    on_dead_end: DeadEndPolicy = "raise",
    **generate_kwargs: Any,
) -> list[Generation]:
    """Like `generate`, for a batch, returning token ids and completeness instead of raising."""
    import torch

    from .processor import constrain

    texts = [format_prompt(tokenizer, p, chat=chat, system=system) for p in prompts]
    eos = eos_ids_of(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = old_side
    inputs = inputs.to(model.device)
    proc = None
    if constraint is not None:
        proc = constrain(tokenizer, constraint, on_dead_end=on_dead_end, eos_token_id=eos)
    with torch.inference_mode():
        out = model.generate(
            **inputs,
            logits_processor=[proc] if proc is not None else [],
            max_new_tokens=max_new_tokens,
            eos_token_id=eos,
            pad_token_id=pad,
            **generate_kwargs,
        )
    new = out[:, inputs["input_ids"].shape[1] :].tolist()
    per_prompt = len(new) // len(prompts)
    results = []
    for i, row in enumerate(new):
        end = next((j for j, t in enumerate(row) if t in eos), len(row))
        tokens = row[:end]
        complete = end < len(row) or proc is None  # no constraint: any text is complete
        if not complete and proc is not None:
            complete = proc.replay(tokens, prompt_index=i // per_prompt).is_accepting()
        results.append(Generation(_decode(proc, tokenizer, tokens), tokens, complete))
    return results


def _decode(proc, tokenizer: PreTrainedTokenizerBase, tokens: list[int]) -> str:
    if proc is not None and proc.vocab is not None:
        return proc.vocab.decode_text(tokens)
    return tokenizer.decode(tokens, skip_special_tokens=True)
