"""Contrastive decoding: CD, USCD (selective, uncertainty-gated CD) and SCD (speculative CD).

Specs: ALGORITHMS.md section 3. Sources: Li et al. 2023 "Contrastive Decoding" (CD; the
logit-space mode is O'Brien & Lewis 2023), Wang et al. 2024 "USCD", Yuan et al. 2023
"Speculative Contrastive Decoding".

The CD target distribution at one step (`cd_scores`, mode "prob", the paper's form)::

    head(x)  = p_E(x) >= alpha * max_{w allowed} p_E(w)
    score(x) = log p_E(x) - lam * max(log p_A(x), -1e4)   for allowed x in head, -inf otherwise
    p_A      = softmax(z_A / amateur_temperature)
    p_CD     = softmax(score)

Mode "logit": score = (1 + beta) z_E - beta z_A on the same head (computed on z_E).

With a grammar constraint the mask applies to this final distribution. The plausibility head is
measured against the best *allowed* expert token, so a constraint never empties it; whenever the
expert's own top token is allowed, this is exactly "mask the final CD distribution".

Every sampler here owns its decoding loop (no transformers warpers: HF's default top_k=50 would
change the distribution). Greedy takes the argmax of the final scores; sampling draws from
softmax(scores) exactly.

SCD runs one sequence at a time (batch 1, documented); CD and USCD take a left-padded batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..errors import GuideDeadEnd, SamplerConfigError
from .models import KVModel, TorchRandom, allowed_mask, check_same_tokenizer, left_pad, shared_width

if TYPE_CHECKING:
    import torch

    from ..constraint import Constraint
    from ..vocab import Vocabulary

Mode = Literal["prob", "logit"]
Statistic = Literal["entropy", "top1"]

AMATEUR_LOGPROB_FLOOR = -1e4


@dataclass
class TwoModelOutput:
    """What a two-model sampler produced, with its cost and diagnostics.

    token_ids: per row, the new tokens (EOS excluded). finished: the row stopped on EOS.
    expert_calls / amateur_calls: forward passes of each model; *_positions: token positions
    computed (catch-up and verification chunks count each position).
    contrast_applied: USCD only, per row and token, whether the contrast fired (the expert was
    uncertain) or the expert's own distribution was used.
    drafted / accepted: SCD only, draft tokens proposed by the amateur and accepted by the expert.
    """

    token_ids: list[list[int]]
    finished: list[bool]
    expert_calls: int = 0
    amateur_calls: int = 0
    expert_positions: int = 0
    amateur_positions: int = 0
    contrast_applied: list[list[bool]] | None = None
    drafted: int = 0
    accepted: int = 0
    seconds: float = 0.0
    texts: list[str] | None = field(default=None)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else float("nan")

    @property
    def contrast_fraction(self) -> float:
        flags = [f for row in (self.contrast_applied or []) for f in row]
        return sum(flags) / len(flags) if flags else float("nan")


def check_cd_args(
    alpha: float, lam: float, amateur_temperature: float, mode: str, beta: float
) -> None:
    """ValueError for CD hyperparameters outside their domain."""
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha <= 1.0):
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam (the amateur's weight) must be a finite number >= 0, got {lam!r}")
    if not (
        isinstance(amateur_temperature, (int, float))
        and math.isfinite(amateur_temperature)
        and amateur_temperature > 0
    ):
        raise ValueError(
            f"amateur_temperature must be a finite number > 0, got {amateur_temperature!r}"
        )
    if mode not in ("prob", "logit"):
        raise ValueError(f"mode must be 'prob' or 'logit', got {mode!r}")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")


def cd_scores(
    expert_logits: torch.Tensor,
    amateur_logits: torch.Tensor,
    *,
    alpha: float = 0.1,
    lam: float = 1.0,
    amateur_temperature: float = 1.0,
    mode: Mode = "prob",
    beta: float = 0.5,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Contrastive scores [..., V] (float32, -inf outside the plausibility head or the constraint).

    Both logits must already be sliced to the shared vocabulary (same last dimension). `allowed`
    (bool [..., V]) is the constraint's mask; the head is relative to the best allowed token.
    """
    import torch

    check_cd_args(alpha, lam, amateur_temperature, mode, beta)
    if expert_logits.shape != amateur_logits.shape:
        raise ValueError(
            f"expert and amateur logits differ in shape {tuple(expert_logits.shape)} vs "
            f"{tuple(amateur_logits.shape)}; slice both to the shared vocabulary first"
        )
    ze = expert_logits.float()
    za = amateur_logits.float()
    neg = torch.tensor(float("-inf"))
    base = torch.log_softmax(ze, dim=-1) if mode == "prob" else ze
    if allowed is not None:
        base = torch.where(allowed, base, neg)
    best = base.max(dim=-1, keepdim=True).values
    head = base >= best + math.log(alpha)
    if mode == "prob":
        lpa = torch.log_softmax(za / amateur_temperature, dim=-1).clamp(min=AMATEUR_LOGPROB_FLOOR)
        score = base - lam * lpa
    else:
        score = (1.0 + beta) * ze - beta * za
    return torch.where(head & torch.isfinite(base), score, neg)


def _entropy_bits(logp: torch.Tensor) -> torch.Tensor:
    import torch

    p = logp.exp()
    return -(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum(-1) / math.log(2)


def uncertainty(
    expert_logits: torch.Tensor, statistic: Statistic, allowed: torch.Tensor | None = None
) -> torch.Tensor:
    """USCD's gate statistic of the expert's (constrained) distribution, per row; larger = less sure.

    "entropy": entropy in bits. "top1": 1 - the top token's probability. Both do not depend on the
    vocabulary size (unlike the std-of-probabilities mu of the public USCD code; see `mu_to_sum_sq`).
    """
    import torch

    z = expert_logits.float()
    if allowed is not None:
        z = torch.where(allowed, z, torch.tensor(float("-inf")))
    logp = torch.log_softmax(z, dim=-1)
    if statistic == "entropy":
        return _entropy_bits(logp)
    if statistic == "top1":
        return 1.0 - logp.max(dim=-1).values.exp()
    raise ValueError(f"statistic must be 'entropy' or 'top1', got {statistic!r}")


def mu_to_sum_sq(mu: float, vocab_size: int) -> float:
    """Convert the public USCD threshold mu = std of the probability vector to sum_x p(x)^2.

    mu^2 = sum p^2 / |V| - 1/|V|^2, so sum p^2 = |V| mu^2 + 1/|V| (e.g. mu = 5e-3 at |V| = 32k
    means sum p^2 ~ 0.8, a top-1 probability near 0.9).
    """
    return vocab_size * mu * mu + 1.0 / vocab_size


def _pick(scores: torch.Tensor, do_sample: bool, rng: Any) -> int:
    import torch

    if do_sample:
        return rng.choice(torch.softmax(scores.double(), dim=-1))
    return int(scores.argmax())


def _matchers(constraint: Constraint | None, vocab: Vocabulary | None, rows: int) -> list[Any]:
    if constraint is None:
        return [None] * rows
    if vocab is None:
        raise ValueError(
            "a constraint needs the vocabulary (pass vocab=Vocabulary.from_tokenizer(...))"
        )
    compiled = constraint.compile(vocab)
    return [compiled.matcher() for _ in range(rows)]


def _eos_set(eos_ids: Sequence[int] | None, vocab: Vocabulary | None) -> frozenset[int]:
    if eos_ids is not None:
        return frozenset(int(e) for e in eos_ids)
    return vocab.eos_ids if vocab is not None else frozenset()


def _check_common(max_new_tokens: int, prompts: Sequence[Sequence[int]]) -> None:
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 1
    ):
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")


def _dead_end(row: int, tokens: list[int], vocab: Vocabulary | None) -> GuideDeadEnd:
    prefix = vocab.decode(tokens) if vocab is not None else b""
    return GuideDeadEnd(f"row {row}: no token is allowed after {prefix!r}", row=row, prefix=prefix)


def contrastive_decode(
    expert: Any,
    amateur: Any,
    prompts: Sequence[Sequence[int]],
    *,
    amateur_prompts: Sequence[Sequence[int]] | None = None,
    constraint: Constraint | None = None,
    vocab: Vocabulary | None = None,
    eos_ids: Sequence[int] | None = None,
    pad_id: int = 0,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    seed: int | None = None,
    rng: Any = None,
    alpha: float = 0.1,
    lam: float = 1.0,
    amateur_temperature: float = 1.0,
    mode: Mode = "prob",
    beta: float = 0.5,
    uscd_threshold: float | None = None,
    uscd_statistic: Statistic = "entropy",
) -> TwoModelOutput:
    """Contrastive decoding over a batch of token-id prompts (left-padded, one KV cache per model).

    `amateur_prompts` lets the amateur see a different context (USCD's "lame" prompt; the
    reference CD's `--ignore_prefix`); both models then condition on the same continuation.
    With `uscd_threshold` set, the contrast is applied only where the expert is uncertain:
    `uncertainty(expert, uscd_statistic) > uscd_threshold`; elsewhere the expert's own
    (constrained) distribution is used. `uscd_threshold=inf` never contrasts (plain expert
    decoding), `None` always contrasts (plain CD).
    """
    import torch

    check_cd_args(alpha, lam, amateur_temperature, mode, beta)
    _check_common(max_new_tokens, prompts)
    if amateur_prompts is not None and len(amateur_prompts) != len(prompts):
        raise ValueError(f"{len(amateur_prompts)} amateur prompts for {len(prompts)} prompts")
    if uscd_threshold is not None:
        if not (isinstance(uscd_threshold, (int, float)) and uscd_threshold >= 0):
            raise ValueError(f"uscd_threshold must be >= 0 (or None), got {uscd_threshold!r}")
        if uscd_statistic not in ("entropy", "top1"):
            raise ValueError(f"uscd_statistic must be 'entropy' or 'top1', got {uscd_statistic!r}")
    rng = rng if rng is not None else TorchRandom(seed)
    eos = _eos_set(eos_ids, vocab)
    rows = len(prompts)
    matchers = _matchers(constraint, vocab, rows)
    vsize = vocab.size if vocab is not None else None
    started = time.perf_counter()

    e, a = KVModel(expert), KVModel(amateur)
    ids, mask = left_pad(prompts, pad_id)
    ze = e.feed(ids, mask)[:, -1]
    aids, amask = left_pad(amateur_prompts if amateur_prompts is not None else prompts, pad_id)
    za = a.feed(aids, amask)[:, -1]
    width = shared_width(ze.shape[-1], za.shape[-1], vsize)

    out: list[list[int]] = [[] for _ in range(rows)]
    done = [False] * rows
    finished = [False] * rows
    fired: list[list[bool]] | None = (
        [[] for _ in range(rows)] if uscd_threshold is not None else None
    )
    for _ in range(max_new_tokens):
        allowed = allowed_mask(
            [None if done[i] else matchers[i] for i in range(rows)], width, vsize
        )
        ze_s, za_s = ze[:, :width], za[:, :width]
        scores = cd_scores(
            ze_s,
            za_s,
            alpha=alpha,
            lam=lam,
            amateur_temperature=amateur_temperature,
            mode=mode,
            beta=beta,
            allowed=allowed,
        )
        if uscd_threshold is not None:
            gate = uncertainty(ze_s, uscd_statistic, allowed) > uscd_threshold
            plain = torch.log_softmax(
                torch.where(allowed, ze_s, torch.tensor(float("-inf"))), dim=-1
            )
            scores = torch.where(gate[:, None], scores, plain)
        step: list[int] = []
        for i in range(rows):
            if done[i]:
                step.append(pad_id)
                continue
            if not torch.isfinite(scores[i]).any():
                raise _dead_end(i, out[i], vocab)
            t = _pick(scores[i], do_sample, rng)
            step.append(t)
            if fired is not None:
                fired[i].append(bool(gate[i]))
            if t in eos:
                done[i] = finished[i] = True
                continue
            if matchers[i] is not None and not matchers[i].advance(t):
                raise AssertionError(f"internal error: token {t} outside the mask was chosen")
            out[i].append(t)
            if matchers[i] is not None and matchers[i].is_finished():
                done[i] = finished[i] = True
        if all(done):
            break
        tokens = torch.tensor(step, dtype=torch.long)[:, None]
        ze = e.feed(tokens)[:, -1]
        za = a.feed(tokens)[:, -1]
    return TwoModelOutput(
        out,
        finished,
        e.calls,
        a.calls,
        e.tokens_fed,
        a.tokens_fed,
        contrast_applied=fired,
        seconds=time.perf_counter() - started,
    )


def uscd_decode(
    model: Any,
    prompts: Sequence[Sequence[int]],
    lame_prompts: Sequence[Sequence[int]],
    *,
    threshold: float = 1.0,
    statistic: Statistic = "entropy",
    **kwargs: Any,
) -> TwoModelOutput:
    """USCD: one model, the standard prompt as expert and the "lame" prompt (few-shot examples
    removed, task kept) as amateur; the contrast fires only where the expert is uncertain
    (`uncertainty > threshold`), and `output.contrast_applied` records where it did.

    Building the lame prompt is the caller's job (it depends on the prompt format).
    """
    return contrastive_decode(
        model,
        model,
        prompts,
        amateur_prompts=lame_prompts,
        uscd_threshold=threshold,
        uscd_statistic=statistic,
        **kwargs,
    )


def scd_decode(
    expert: Any,
    amateur: Any,
    prompt: Sequence[int],
    *,
    gamma: int = 4,
    constraint: Constraint | None = None,
    vocab: Vocabulary | None = None,
    eos_ids: Sequence[int] | None = None,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    seed: int | None = None,
    rng: Any = None,
    alpha: float = 0.1,
    lam: float = 1.0,
    amateur_temperature: float = 1.0,
    mode: Mode = "prob",
    beta: float = 0.5,
) -> TwoModelOutput:
    """Speculative contrastive decoding of one prompt (batch 1).

    Each round the amateur drafts up to `gamma` tokens from its own (constrained) distribution
    p_A = softmax(z_A / amateur_temperature); the expert scores the prefix and all drafts in one
    forward pass; draft i is accepted with probability min(1, p_CD(x_i) / p_A(x_i)); at the first
    rejection a token is drawn from norm(max(0, p_CD - p_A)) and the round ends; when every draft
    is accepted one bonus token comes from p_CD at the next position (the amateur runs one extra
    step for it). Each emitted token is then an exact sample of CD's distribution. Greedy
    (`do_sample=False`): drafts are the amateur's argmax, accepted iff equal to argmax p_CD, so the
    output is token-identical to greedy `contrastive_decode`.
    """
    import torch

    check_cd_args(alpha, lam, amateur_temperature, mode, beta)
    if isinstance(gamma, bool) or not isinstance(gamma, int) or gamma < 1:
        raise ValueError(f"gamma (draft length) must be an int >= 1, got {gamma!r}")
    _check_common(max_new_tokens, [prompt])
    rng = rng if rng is not None else TorchRandom(seed)
    eos = _eos_set(eos_ids, vocab)
    matcher = _matchers(constraint, vocab, 1)[0]
    vsize = vocab.size if vocab is not None else None
    kw = {
        "alpha": alpha,
        "lam": lam,
        "amateur_temperature": amateur_temperature,
        "mode": mode,
        "beta": beta,
    }
    started = time.perf_counter()

    e, a = KVModel(expert), KVModel(amateur)
    prompt = [int(t) for t in prompt]
    consumed = len(prompt) - 1  # positions both caches hold; the last prompt token is `pending`
    if consumed:
        e.feed(torch.tensor([prompt[:-1]]))
        a.feed(torch.tensor([prompt[:-1]]))
    pending = prompt[-1]
    width: int | None = None
    known = [_config_width(expert), _config_width(amateur)]
    if None not in known:
        width = shared_width(*known, vsize)
    out: list[int] = []
    finished = False
    drafted = accepted = 0

    def mask_now() -> torch.Tensor:
        assert width is not None
        return allowed_mask([matcher], width, vsize)[0]

    while len(out) < max_new_tokens and not finished:
        drafts: list[int] = []
        proposals: list[torch.Tensor] = []
        amateur_rows: list[torch.Tensor] = []
        masks: list[torch.Tensor] = []
        advanced = 0
        prev = pending
        for _ in range(min(gamma, max_new_tokens - len(out))):
            za = a.feed(torch.tensor([[prev]]))[0, -1]
            if width is None:
                width = shared_width(za.shape[-1], vsize)
            allowed = mask_now()
            q_logits = torch.where(
                allowed, za[:width] / amateur_temperature, torch.tensor(float("-inf"))
            )
            if not torch.isfinite(q_logits).any():
                raise _dead_end(0, out + drafts, vocab)
            q = torch.softmax(q_logits.double(), dim=-1)
            d = rng.choice(q) if do_sample else int(q.argmax())
            drafts.append(d)
            proposals.append(q)
            amateur_rows.append(za)
            masks.append(allowed)
            if d in eos:
                break
            if matcher is not None:
                matcher.advance(d)
                advanced += 1
            prev = d
        bonus_ok = drafts[-1] not in eos
        za_bonus = a.feed(torch.tensor([[drafts[-1]]]))[0, -1] if bonus_ok else None
        ze_all = e.feed(torch.tensor([[pending] + drafts]))[0]
        if ze_all.shape[-1] < width:
            raise ValueError(
                f"the expert's logits ({ze_all.shape[-1]}) are narrower than the amateur's ({width}) "
                "and neither model has config.vocab_size to size them ahead"
            )
        emitted: list[int] = []
        kept = 0
        for i, d in enumerate(drafts):
            scores = cd_scores(ze_all[i, :width], amateur_rows[i][:width], allowed=masks[i], **kw)
            pc = torch.softmax(scores.double(), dim=-1)
            q = proposals[i]
            drafted += 1
            if do_sample:
                ok = rng.bernoulli(min(1.0, float(pc[d] / q[d])))
            else:
                ok = d == int(scores.argmax())
            if ok:
                accepted += 1
                kept += 1
                emitted.append(d)
                continue
            if matcher is not None and advanced - i > 0:
                matcher.rollback(advanced - i)
            if do_sample:
                resid = (pc - q).clamp(min=0)
                t = rng.choice(resid / resid.sum())
            else:
                t = int(scores.argmax())
            emitted.append(t)
            if matcher is not None and t not in eos:
                matcher.advance(t)
            break
        else:
            if bonus_ok:
                assert za_bonus is not None
                scores = cd_scores(
                    ze_all[len(drafts), :width], za_bonus[:width], allowed=mask_now(), **kw
                )
                if not torch.isfinite(scores).any():
                    raise _dead_end(0, out + drafts, vocab)
                t = _pick(scores, do_sample, rng)
                emitted.append(t)
                if matcher is not None and t not in eos:
                    matcher.advance(t)
        consumed += 1 + kept
        if emitted[-1] not in eos:  # after EOS nothing more is decoded (the caches may be shorter)
            e.crop(consumed)
            a.crop(consumed)
        appended = 0
        for t in emitted:
            if t in eos:
                finished = True
                break
            out.append(t)
            appended += 1
            if len(out) >= max_new_tokens:
                break
        # The matcher has consumed every emitted token; once it is finished only EOS could follow.
        whole_round = appended == sum(t not in eos for t in emitted)
        if matcher is not None and whole_round and matcher.is_finished():
            finished = True
        pending = emitted[-1]
    return TwoModelOutput(
        [out],
        [finished],
        e.calls,
        a.calls,
        e.tokens_fed,
        a.tokens_fed,
        drafted=drafted,
        accepted=accepted,
        seconds=time.perf_counter() - started,
    )


def _config_width(model: Any) -> int | None:
    width = getattr(getattr(model, "config", None), "vocab_size", None)
    return int(width) if isinstance(width, int) else None


def _encode(tokenizer: Any, prompts: Sequence[str], chat: bool | None) -> list[list[int]]:
    from ..generate import format_prompt

    texts = [format_prompt(tokenizer, p, chat=chat) for p in prompts]
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def _text_setup(
    expert: Any, amateur: Any, tokenizer: Any, amateur_tokenizer: Any, prompts: str | Sequence[str]
) -> tuple[Vocabulary, list[int], int, list[str]]:
    """What every text-in wrapper needs: (vocabulary, EOS ids, pad id, the prompts as a list)."""
    from ..generate import eos_ids_of
    from ..vocab import Vocabulary

    if amateur_tokenizer is not None:
        check_same_tokenizer(tokenizer, amateur_tokenizer)
    eos = eos_ids_of(expert, tokenizer)
    width = shared_width(expert.config.vocab_size, amateur.config.vocab_size)
    width = max(width, len(tokenizer))
    vocab = Vocabulary.from_tokenizer(tokenizer, width, eos_token_id=eos)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    batch = [prompts] if isinstance(prompts, str) else list(prompts)
    return vocab, eos, pad, batch


def contrastive_generate(
    expert: Any,
    amateur: Any,
    tokenizer: Any,
    prompts: str | Sequence[str],
    constraint: Constraint | None = None,
    *,
    amateur_tokenizer: Any = None,
    speculative: bool = False,
    gamma: int = 4,
    chat: bool | None = None,
    max_new_tokens: int = 128,
    **kwargs: Any,
) -> TwoModelOutput:
    """Text in, text out: CD over a batch of prompts, or SCD (`speculative=True`, one prompt at a
    time). `amateur_tokenizer`, when given, must equal `tokenizer` (TokenizerError otherwise).
    `output.texts` holds the decoded continuations; other keywords go to `contrastive_decode` /
    `scd_decode` (alpha, lam, amateur_temperature, mode, do_sample, seed, ...).
    """
    vocab, eos, pad, batch = _text_setup(expert, amateur, tokenizer, amateur_tokenizer, prompts)
    ids = _encode(tokenizer, batch, chat)
    if speculative:
        parts = [
            scd_decode(
                expert,
                amateur,
                p,
                gamma=gamma,
                constraint=constraint,
                vocab=vocab,
                eos_ids=eos,
                max_new_tokens=max_new_tokens,
                **kwargs,
            )
            for p in ids
        ]
        result = TwoModelOutput(
            [p.token_ids[0] for p in parts],
            [p.finished[0] for p in parts],
            sum(p.expert_calls for p in parts),
            sum(p.amateur_calls for p in parts),
            sum(p.expert_positions for p in parts),
            sum(p.amateur_positions for p in parts),
            drafted=sum(p.drafted for p in parts),
            accepted=sum(p.accepted for p in parts),
            seconds=sum(p.seconds for p in parts),
        )
    else:
        result = contrastive_decode(
            expert,
            amateur,
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


def uscd_generate(
    model: Any,
    tokenizer: Any,
    prompts: str | Sequence[str],
    constraint: Constraint | None = None,
    *,
    lame_prompts: str | Sequence[str] | None = None,
    threshold: float = 1.0,
    statistic: Statistic = "entropy",
    chat: bool | None = None,
    max_new_tokens: int = 128,
    **kwargs: Any,
) -> TwoModelOutput:
    """Text in, text out USCD with one model: each prompt against its lame prompt, built by
    `guide.samplers.lame.lame_prompt` (demonstrations removed) unless `lame_prompts` are given.
    Other keywords go to `contrastive_decode` (alpha, lam, do_sample, seed, ...)."""
    from .lame import lame_prompt

    vocab, eos, pad, batch = _text_setup(model, model, tokenizer, None, prompts)
    if lame_prompts is None:
        lame = [lame_prompt(p) for p in batch]
    else:
        lame = [lame_prompts] if isinstance(lame_prompts, str) else list(lame_prompts)
        if len(lame) != len(batch):
            raise SamplerConfigError(f"{len(lame)} lame prompts for {len(batch)} prompts")
    result = uscd_decode(
        model,
        _encode(tokenizer, batch, chat),
        _encode(tokenizer, lame, chat),
        threshold=threshold,
        statistic=statistic,
        constraint=constraint,
        vocab=vocab,
        eos_ids=eos,
        pad_id=pad,
        max_new_tokens=max_new_tokens,
        **kwargs,
    )
    result.texts = [vocab.decode_text(t) for t in result.token_ids]
    return result


__all__ = [
    "TwoModelOutput",
    "cd_scores",
    "check_cd_args",
    "contrastive_decode",
    "contrastive_generate",
    "mu_to_sum_sq",
    "scd_decode",
    "uncertainty",
    "uscd_decode",
    "uscd_generate",
]
