"""Entropy Adaptive Decoding (EAD): decode with a small model, hand over to a large one while the
small one is uncertain. Spec: ALGORITHMS.md section 4; source: Simonds 2025, "Entropy Adaptive
Decoding: Dynamic Model Switching for Efficient Inference" (arXiv 2502.06833).

Per row and token: the producing model's next-token distribution (after the grammar mask, before
temperature) gives an entropy H in bits; H-bar is the mean of the last `window` (5) entropies,
whichever model produced them. On the small model, H-bar >= `threshold` switches to the large
one; on the large model, H-bar < `threshold_down` (default: `threshold`) switches back, but only
after `min_large_tokens` large-model tokens (hysteresis, against flapping). So `threshold=inf`
never uses the large model, and `threshold=0` with `switch_timing="current"` uses it for every
token. `switch_timing="next"` (default, cheaper) applies a switch from the next token;
`"current"` discards the small model's prediction and lets the large model produce this token.

KV caches: each model keeps its own cache for the whole batch. When a model is needed, it first
consumes in one forward pass (chunked prefill) every token the other model produced since it
last ran, for all rows at once, so the two caches always describe the same token sequence; the
catch-up positions are counted in `large_positions` / `small_positions`. A model runs on the whole
batch whenever any row needs it (rows then take their own model's logits), so batching with left
padding is exact: each row's output equals its output decoded alone.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .models import KVModel, TorchRandom, allowed_mask, left_pad, shared_width

if TYPE_CHECKING:
    import torch

    from ..constraint import Constraint
    from ..vocab import Vocabulary

Timing = Literal["next", "current"]


class SwitchPolicy:
    """The switching rule of one sequence: rolling entropy window plus hysteresis."""

    def __init__(
        self,
        threshold: float,
        threshold_down: float | None = None,
        *,
        window: int = 5,
        min_large_tokens: int = 4,
    ) -> None:
        check_switch_args(threshold, threshold_down, window, min_large_tokens)
        self.up = float(threshold)
        self.down = float(threshold if threshold_down is None else threshold_down)
        self.window: deque[float] = deque(maxlen=window)
        self.min_large = min_large_tokens
        self.on_large = False
        self.stay = 0

    def mean(self, extra: float | None = None) -> float:
        values = list(self.window) + ([] if extra is None else [extra])
        values = values[-self.window.maxlen :] if self.window.maxlen else values
        return sum(values) / len(values) if values else 0.0

    def wants_large_now(self, entropy: float) -> bool:
        """On the small model: would this token's entropy already push H-bar over the threshold?"""
        return not self.on_large and self.mean(entropy) >= self.up

    def switch_up(self) -> None:
        self.on_large, self.stay = True, 0

    def observe(self, entropy: float, by_large: bool) -> None:
        """Record the entropy of a produced token and decide which model produces the next one."""
        if by_large:
            self.stay += 1
        self.window.append(float(entropy))
        h = self.mean()
        if not self.on_large and h >= self.up:
            self.switch_up()
        elif self.on_large and self.stay >= self.min_large and h < self.down:
            self.on_large = False


def check_switch_args(
    threshold: float, threshold_down: float | None, window: int, min_large_tokens: int
) -> None:
    for name, value in (("threshold", threshold), ("threshold_down", threshold_down)):
        if value is None and name == "threshold_down":
            continue
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or math.isnan(value)
            or value < 0
        ):
            raise ValueError(f"{name} (entropy in bits) must be >= 0 (inf allowed), got {value!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}")
    if (
        isinstance(min_large_tokens, bool)
        or not isinstance(min_large_tokens, int)
        or min_large_tokens < 0
    ):
        raise ValueError(f"min_large_tokens must be an int >= 0, got {min_large_tokens!r}")


@dataclass
class SwitchingOutput:
    """EAD's result. `sources[i][j]` is "L" when the large model produced token j of row i, else
    "S"; `entropies` the matching entropies (bits). `large_positions` counts every position the
    large model computed, catch-up chunks included."""

    token_ids: list[list[int]]
    finished: list[bool]
    sources: list[list[str]]
    entropies: list[list[float]]
    small_calls: int = 0
    large_calls: int = 0
    small_positions: int = 0
    large_positions: int = 0
    seconds: float = 0.0
    texts: list[str] | None = field(default=None)

    @property
    def large_fraction(self) -> float:
        flags = [s == "L" for row in self.sources for s in row]
        return sum(flags) / len(flags) if flags else float("nan")

    def relative_cost(self, small_params: float, large_params: float) -> float:
        """Parameter-weighted cost against the large model alone: f_L + (1 - f_L) P_S / P_L."""
        f = self.large_fraction
        return f + (1 - f) * small_params / large_params


class _Runner:
    """One model's cache plus the shared token history: catches up lazily, in one pass."""

    def __init__(self, model: Any, ids: torch.Tensor, mask: torch.Tensor) -> None:
        self.kv = KVModel(model)
        self.ids, self.mask = ids, mask
        self.done = 0  # generated tokens consumed
        self.last: torch.Tensor | None = None

    def logits(self, generated: list[torch.Tensor]) -> torch.Tensor:
        import torch

        if self.last is not None and self.done == len(generated):
            return self.last
        new = generated[self.done :]
        if self.kv.length == 0:
            chunk = torch.cat([self.ids, *[g[:, None] for g in new]], dim=1)
            mask = torch.cat(
                [self.mask, torch.ones((self.ids.shape[0], len(new)), dtype=torch.long)], dim=1
            )
            self.last = self.kv.feed(chunk, mask)[:, -1]
        else:
            self.last = self.kv.feed(torch.stack(new, dim=1))[:, -1]
        self.done = len(generated)
        return self.last


def ead_decode(
    small: Any,
    large: Any,
    prompts: Sequence[Sequence[int]],
    *,
    threshold: float = 2.0,
    threshold_down: float | None = None,
    window: int = 5,
    min_large_tokens: int = 4,
    switch_timing: Timing = "next",
    constraint: Constraint | None = None,
    vocab: Vocabulary | None = None,
    eos_ids: Sequence[int] | None = None,
    pad_id: int = 0,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int | None = None,
    rng: Any = None,
) -> SwitchingOutput:
    """Entropy-adaptive decoding of a left-padded batch of token-id prompts (see the module doc)."""
    import torch

    from .contrastive import _check_common, _config_width, _dead_end, _eos_set, _matchers

    check_switch_args(threshold, threshold_down, window, min_large_tokens)
    _check_common(max_new_tokens, prompts)
    if switch_timing not in ("next", "current"):
        raise ValueError(f"switch_timing must be 'next' or 'current', got {switch_timing!r}")
    if not (
        isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    rng = rng if rng is not None else TorchRandom(seed)
    eos = _eos_set(eos_ids, vocab)
    rows = len(prompts)
    matchers = _matchers(constraint, vocab, rows)
    vsize = vocab.size if vocab is not None else None
    policies = [
        SwitchPolicy(threshold, threshold_down, window=window, min_large_tokens=min_large_tokens)
        for _ in range(rows)
    ]
    started = time.perf_counter()
    ids, mask = left_pad(prompts, pad_id)
    runners = {"S": _Runner(small, ids, mask), "L": _Runner(large, ids, mask)}
    generated: list[torch.Tensor] = []
    out: list[list[int]] = [[] for _ in range(rows)]
    sources: list[list[str]] = [[] for _ in range(rows)]
    entropies: list[list[float]] = [[] for _ in range(rows)]
    done = [False] * rows
    finished = [False] * rows
    # The two models can differ in width: both are sliced to the shared vocabulary.
    known = [_config_width(small), _config_width(large)]
    width: int | None = shared_width(*known, vsize) if None not in known else None

    def dist(z: torch.Tensor, allowed: torch.Tensor) -> tuple[torch.Tensor, float]:
        if z.shape[-1] < allowed.shape[-1]:
            raise ValueError("the models' logits differ in width and neither has config.vocab_size")
        logits = torch.where(allowed, z[: allowed.shape[-1]], torch.tensor(float("-inf")))
        logp = torch.log_softmax(logits.double(), dim=-1)
        p = logp.exp()
        h = float(-(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum() / math.log(2))
        return logits, max(h, 0.0)

    def model_logits(which: str) -> torch.Tensor:
        nonlocal width
        z = runners[which].logits(generated)  # catches up on every token it has not seen
        if width is None:
            width = shared_width(z.shape[-1], vsize)
        return z

    def masks() -> torch.Tensor:
        assert width is not None
        return allowed_mask([None if done[i] else matchers[i] for i in range(rows)], width, vsize)

    for _ in range(max_new_tokens):
        active = [i for i in range(rows) if not done[i]]
        logits: dict[str, torch.Tensor] = {}
        allowed_all: torch.Tensor | None = None
        if any(not policies[i].on_large for i in active):
            logits["S"] = model_logits("S")
            allowed_all = masks()
            if switch_timing == "current":
                for i in active:
                    if not policies[i].on_large:
                        _, h = dist(logits["S"][i], allowed_all[i])
                        if policies[i].wants_large_now(h):
                            policies[i].switch_up()
        if any(policies[i].on_large for i in active):
            logits["L"] = model_logits("L")
            if allowed_all is None:
                allowed_all = masks()
        assert allowed_all is not None
        step: list[int] = []
        for i in range(rows):
            if done[i]:
                step.append(pad_id)
                continue
            src = "L" if policies[i].on_large else "S"
            z, h = dist(logits[src][i], allowed_all[i])
            if not torch.isfinite(z).any():
                raise _dead_end(i, out[i], vocab)
            if do_sample:
                t = rng.choice(torch.softmax(z / temperature, dim=-1))
            else:
                t = int(z.argmax())
            policies[i].observe(h, src == "L")
            step.append(t)
            if t in eos:
                done[i] = finished[i] = True
                continue
            if matchers[i] is not None and not matchers[i].advance(t):
                raise AssertionError(f"internal error: token {t} outside the mask was chosen")
            out[i].append(t)
            sources[i].append(src)
            entropies[i].append(h)
            if matchers[i] is not None and matchers[i].is_finished():
                done[i] = finished[i] = True
        if all(done):
            break
        generated.append(torch.tensor(step, dtype=torch.long))
    s, l_ = runners["S"].kv, runners["L"].kv
    return SwitchingOutput(
        out,
        finished,
        sources,
        entropies,
        s.calls,
        l_.calls,
        s.tokens_fed,
        l_.tokens_fed,
        seconds=time.perf_counter() - started,
    )


def ead_generate(
    small: Any,
    large: Any,
    tokenizer: Any,
    prompts: str | Sequence[str],
    constraint: Constraint | None = None,
    *,
    small_tokenizer: Any = None,
    chat: bool | None = None,
    max_new_tokens: int = 128,
    **kwargs: Any,
) -> SwitchingOutput:
    """Text in, text out EAD over a batch of prompts; `small_tokenizer`, when given, must equal
    `tokenizer` (TokenizerError otherwise). Other keywords go to `ead_decode`."""
    from .contrastive import _encode, _text_setup

    vocab, eos, pad, batch = _text_setup(large, small, tokenizer, small_tokenizer, prompts)
    ids = _encode(tokenizer, batch, chat)
    result = ead_decode(
        small,
        large,
        ids,
        constraint=constraint,
        vocab=vocab,
        eos_ids=eos,
        pad_id=pad,
        max_new_tokens=max_new_tokens,
        **kwargs,
    )
    result.texts = [vocab.decode_text(t) for t in result.token_ids]
    return result


__all__ = ["SwitchPolicy", "SwitchingOutput", "check_switch_args", "ead_decode", "ead_generate"]
