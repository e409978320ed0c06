"""Minimum Bayes risk (MBR) reranking. Spec: ALGORITHMS.md section 5; source: Wu et al. 2025,
"Better Instruction-Following Through Minimum Bayes Risk" (arXiv 2410.02902).

Sample N candidates H (batched, under any constraint), use the candidates themselves as
pseudo-references R, and pick

    h* = argmax_h  sum_{r in R, r != h} w(r) u(h, r) / sum_{r in R, r != h} w(r)

with uniform w (Monte Carlo) unless weights are given. The self-pair is never scored. Ties go to
the lowest index. Three ways to spend utility calls (`method`):

- `"full"`: every ordered pair, N(N-1) calls; N(N-1)/2 for a symmetric utility (each unordered
  pair is scored once and mirrored).
- `"subsample"`: `references` pseudo-references drawn at random (seeded) from the candidates;
  N * references calls at most (fewer when symmetric pairs repeat).
- `"prune"`: confidence-based pruning (Cheng & Vlachos 2023, as in the mbrs toolkit): references
  are added in stages (`schedule`, default max(4, N // 4) doubling up to N); after each stage a bootstrap over the references estimates,
  for every surviving candidate, the chance that its expected utility is at least the current
  leader's; candidates below `prune_threshold` are dropped and never scored again.

`utility_calls` in the result counts the pairs actually scored; the cost figures in
docs/mbr.md come from it.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import SamplerConfigError
from .utilities import Utility, make_utility

if TYPE_CHECKING:
    from ..constraint import Constraint
    from ..generate import Generation

Method = Literal["full", "subsample", "prune"]
METHODS = ("full", "subsample", "prune")
PROGRESS_MIN_PAIRS = 64  # `progress=None` shows a bar on a terminal from this many pairs on


@dataclass(frozen=True)
class MBRResult:
    """The selection and everything it was computed from.

    `matrix[h, r]` = u(candidates[h], candidates[r]); NaN where not scored (the diagonal, pairs
    outside the references, pruned candidates). `expected[h]` = the weighted mean of row h over
    the references other than h (NaN for pruned candidates). `alive[h]` is False for candidates
    pruned or excluded as incomplete.
    """

    index: int
    text: str
    candidates: list[str]
    matrix: np.ndarray
    expected: np.ndarray
    references: list[int]
    alive: np.ndarray
    utility_calls: int
    method: str
    complete: list[bool] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def expected_utilities(matrix: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Per-row weighted mean of the scored (non-NaN) entries, self-pair excluded; NaN for empty rows."""
    m = np.array(matrix, dtype=np.float64, copy=True)
    np.fill_diagonal(m, np.nan)
    w = np.ones(m.shape[1]) if weights is None else np.asarray(weights, dtype=np.float64)
    scored = ~np.isnan(m)
    mass = (scored * w).sum(axis=1)
    total = np.where(scored, m, 0.0) @ w
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass > 0, total / np.where(mass > 0, mass, 1.0), np.nan)


def _argmax(expected: np.ndarray, alive: np.ndarray) -> int:
    values = np.where(alive & ~np.isnan(expected), expected, -np.inf)
    if np.all(values == -np.inf):
        return int(np.flatnonzero(alive)[0])
    return int(np.argmax(values))  # first maximum: ties go to the lowest index


class _Scorer:
    """Fills a NaN matrix on demand, scoring each needed pair once (mirrored for symmetric utilities)."""

    def __init__(self, utility: Utility, texts: Sequence[str], source: str | None, progress: Any) -> None:
        self.utility, self.texts, self.source, self.progress = utility, texts, source, progress
        n = len(texts)
        self.matrix = np.full((n, n), np.nan)
        self.calls = 0

    def fill(self, rows: Sequence[int], cols: Sequence[int]) -> None:
        todo: dict[tuple[int, int], None] = {}
        for h in rows:
            for r in cols:
                if h == r or not np.isnan(self.matrix[h, r]):
                    continue
                key = (min(h, r), max(h, r)) if self.utility.symmetric else (h, r)
                todo[key] = None
        pairs = list(todo)
        if not pairs:
            return
        chunk = max(16, getattr(self.utility, "batch_size", 16))
        task = self.progress.add_task(f"MBR {self.utility.name}", total=len(pairs)) if self.progress else None
        for start in range(0, len(pairs), chunk):
            part = pairs[start : start + chunk]
            scores = self.utility.pair_scores(self.texts, part, source=self.source)
            for (h, r), s in zip(part, scores):
                self.matrix[h, r] = s
                if self.utility.symmetric:
                    self.matrix[r, h] = s
            if task is not None:
                self.progress.advance(task, len(part))
        self.calls += len(pairs)


class MBR:
    """MBR reranking with one utility and one selection method.

    Example:
        >>> from guide.samplers import MBR
        >>> MBR("exact").select(["4", "5", "4"]).text
        '4'
    """

    def __init__(
        self,
        utility: Utility | str = "chrf",
        *,
        method: Method = "full",
        references: int | None = None,
        schedule: Sequence[int] | None = None,
        prune_threshold: float = 0.05,
        bootstrap: int = 200,
        seed: int | None = 0,
        progress: bool | None = None,
        utility_options: dict[str, Any] | None = None,
    ) -> None:
        if method not in METHODS:
            raise SamplerConfigError(f"`method` has to be one of {', '.join(METHODS)}, not {method!r}")
        if references is not None and (isinstance(references, bool) or not isinstance(references, int) or references < 1):
            raise SamplerConfigError(f"`references` has to be a positive int, got {references!r}")
        if method == "subsample" and references is None:
            raise SamplerConfigError("method='subsample' needs `references` (how many pseudo-references)")
        if not 0.0 <= prune_threshold < 1.0:
            raise SamplerConfigError(f"`prune_threshold` has to be in [0, 1), got {prune_threshold}")
        if bootstrap < 1:
            raise SamplerConfigError(f"`bootstrap` has to be at least 1, got {bootstrap}")
        if schedule is not None and (not schedule or any(b <= a for a, b in itertools.pairwise(schedule)) or schedule[0] < 1):
            raise SamplerConfigError(f"`schedule` has to be strictly increasing positive sizes, got {list(schedule)!r}")
        self.utility = make_utility(utility, **(utility_options or {})) if isinstance(utility, str) else utility
        if not isinstance(self.utility, Utility):
            raise SamplerConfigError(f"`utility` has to be a name or a Utility, got {type(utility).__name__}")
        self.method, self.references, self.schedule = method, references, schedule
        self.prune_threshold, self.bootstrap, self.seed, self.progress = prune_threshold, bootstrap, seed, progress

    def select(
        self,
        candidates: Sequence[str],
        *,
        source: str | None = None,
        weights: Sequence[float] | None = None,
        eligible: Sequence[bool] | None = None,
    ) -> MBRResult:
        """Pick the candidate with the highest expected utility against the others.

        `source` is the instruction (the judge reads it); `weights` one non-negative weight per
        candidate as a reference (default uniform); `eligible` False marks candidates that may
        serve as references but must not be selected.
        """
        n = len(candidates)
        if n < 1:
            raise SamplerConfigError("MBR needs at least one candidate (N >= 1)")
        w = None if weights is None else np.asarray(weights, dtype=np.float64)
        if w is not None and (w.shape != (n,) or np.any(w < 0) or not np.all(np.isfinite(w))):
            raise SamplerConfigError(f"`weights` has to be {n} finite non-negative numbers")
        alive = np.ones(n, bool) if eligible is None else np.asarray(eligible, dtype=bool)
        if alive.shape != (n,) or not alive.any():
            raise SamplerConfigError("`eligible` has to mark at least one of the candidates")
        rng = np.random.default_rng(self.seed)
        started = time.perf_counter()
        self.utility.prepare(candidates, source=source)
        with _ProgressBar(self.progress, n) as bar:
            scorer = _Scorer(self.utility, candidates, source, bar)
            if self.method == "prune":
                refs, alive = self._prune(scorer, n, alive, w, rng)
            else:
                refs = list(range(n))
                if self.method == "subsample" and self.references is not None and self.references < n:
                    refs = sorted(int(i) for i in rng.choice(n, size=self.references, replace=False))
                scorer.fill(list(np.flatnonzero(alive)), refs)
        expected = expected_utilities(_only(scorer.matrix, refs), w)
        expected[~alive] = np.nan
        index = _argmax(expected, alive)
        return MBRResult(
            index=index, text=candidates[index], candidates=list(candidates), matrix=scorer.matrix,
            expected=expected, references=refs, alive=alive, utility_calls=scorer.calls, method=self.method,
            timings={"utility_s": time.perf_counter() - started},
        )

    def _prune(self, scorer: _Scorer, n: int, alive: np.ndarray, w: np.ndarray | None, rng: np.random.Generator) -> tuple[list[int], np.ndarray]:
        order = [int(i) for i in rng.permutation(n)]
        sizes = [s for s in (self.schedule or _doubling(n)) if s < n] + [n]
        alive = alive.copy()
        refs: list[int] = []
        for size in sizes:
            refs = order[:size]
            scorer.fill(list(np.flatnonzero(alive)), refs)
            if size == n or alive.sum() == 1:
                break
            alive &= self._survivors(scorer.matrix, refs, alive, w, rng)
            if alive.sum() == 1:  # a sole survivor needs no more references
                break
        return refs, alive

    def _survivors(self, matrix: np.ndarray, refs: list[int], alive: np.ndarray, w: np.ndarray | None,
                   rng: np.random.Generator) -> np.ndarray:
        """Bootstrap over the reference columns: keep h when P(E[u(h)] >= E[u(leader)]) >= threshold."""
        sub = matrix[:, refs]  # [N, k]; self-pairs are NaN and skipped
        k = len(refs)
        ww = np.ones(k) if w is None else w[refs]
        draws = rng.integers(0, k, size=(self.bootstrap, k))
        scored = ~np.isnan(sub)
        values = np.where(scored, sub, 0.0)
        mass = np.einsum("bk,nbk->bn", ww[draws], scored[:, draws].astype(np.float64))
        total = np.einsum("bk,nbk->bn", ww[draws], values[:, draws])
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = np.where(mass > 0, total / np.where(mass > 0, mass, 1.0), -np.inf)  # [B, N]
        leader = _argmax(expected_utilities(_only(matrix, refs), w), alive)
        keep = (boot >= boot[:, [leader]]).mean(axis=0) >= self.prune_threshold
        keep[leader] = True
        return keep

    def generate(
        self,
        model: Any,
        tokenizer: Any,
        prompt: str,
        constraint: Constraint | None = None,
        *,
        n: int = 8,
        temperature: float = 0.7,
        max_new_tokens: int = 128,
        chat: bool | None = None,
        system: str | None = None,
        seed: int | None = None,
        weights: Literal["uniform", "model"] = "uniform",
        **generate_kwargs: Any,
    ) -> MBRResult:
        """Sample `n` candidates in one batch (under `constraint`, if given) and select one.

        Candidates that `max_new_tokens` cut short of the constraint serve as references but are
        never selected. `weights="model"` weights each reference by its sequence probability
        under the sampler (renormalised over the candidates).

        Raises:
            SamplerConfigError: `n` < 1 or a bad option.
            IncompleteGenerationError: no candidate satisfied the constraint.
        """
        from ..generate import IncompleteGenerationError

        check_n(n)
        if weights not in ("uniform", "model"):
            raise SamplerConfigError(f"`weights` has to be 'uniform' or 'model', not {weights!r}")
        started = time.perf_counter()
        generations = sample_candidates(
            model, tokenizer, prompt, constraint, n=n, temperature=temperature, max_new_tokens=max_new_tokens,
            chat=chat, system=system, seed=seed, **generate_kwargs,
        )
        generate_s = time.perf_counter() - started
        complete = [g.complete for g in generations]
        if not any(complete):
            raise IncompleteGenerationError(
                f"none of the {n} candidates satisfied the constraint within max_new_tokens={max_new_tokens}; "
                f"first partial text: {generations[0].text!r}"
            )
        w = None
        if weights == "model":
            logprobs = _sequence_logprobs(model, tokenizer, prompt, generations, chat=chat, system=system,
                                          temperature=temperature)
            w = np.exp(logprobs - logprobs.max())
        result = self.select([g.text for g in generations], source=prompt, weights=w, eligible=complete)
        return MBRResult(**{**result.__dict__, "complete": complete,
                            "timings": {"generate_s": generate_s, **result.timings}})


def check_n(n: Any) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SamplerConfigError(f"MBR needs `n` >= 1 candidates, got {n!r}")


def sample_candidates(
    model: Any,
    tokenizer: Any,
    prompt: str,
    constraint: Constraint | None,
    *,
    n: int,
    temperature: float = 0.7,
    max_new_tokens: int = 128,
    chat: bool | None = None,
    system: str | None = None,
    seed: int | None = None,
    **generate_kwargs: Any,
) -> list[Generation]:
    """`n` samples for one prompt in one batch (`num_return_sequences`): pure sampling at `temperature`
    (top_k=0, top_p=1 unless overridden), masked by `constraint`."""
    import torch

    from ..generate import generate_detailed

    check_n(n)
    if not temperature > 0:
        raise SamplerConfigError(f"MBR samples its candidates: `temperature` has to be > 0, got {temperature}")
    if seed is not None:
        torch.manual_seed(seed)
    options = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0, **generate_kwargs}
    return generate_detailed(
        model, tokenizer, [prompt], constraint, max_new_tokens=max_new_tokens, chat=chat, system=system,
        num_return_sequences=n, **options,
    )


def _sequence_logprobs(model: Any, tokenizer: Any, prompt: str, generations: list[Generation], *, chat: bool | None,
                       system: str | None, temperature: float) -> np.ndarray:
    """log p(candidate | prompt) under the model at `temperature` (unmasked), one batched forward pass."""
    import torch

    from ..generate import format_prompt

    head = tokenizer.encode(format_prompt(tokenizer, prompt, chat=chat, system=system), add_special_tokens=False)
    rows = [head + g.token_ids for g in generations]
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    with torch.inference_mode():
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float().cpu()
    logp = torch.log_softmax(logits / temperature, dim=-1)
    out = np.zeros(len(rows))
    for i, g in enumerate(generations):
        positions = torch.arange(len(head) - 1, len(head) - 1 + len(g.token_ids))
        out[i] = float(logp[i, positions, torch.tensor(g.token_ids, dtype=torch.long)].sum()) if g.token_ids else 0.0
    return out


def _only(matrix: np.ndarray, refs: Sequence[int]) -> np.ndarray:
    """The matrix with every column outside `refs` blanked (NaN), so expectations use the references only."""
    out = np.full_like(matrix, np.nan)
    out[:, refs] = matrix[:, refs]
    return out


def _doubling(n: int) -> list[int]:
    """Default pruning stages: max(4, n // 4) references, doubling up to n."""
    sizes, s = [], max(4, n // 4)
    while s < n:
        sizes.append(s)
        s *= 2
    return sizes


class _ProgressBar:
    """A rich bar on stderr while pairs are scored; `wanted=None`: only on a terminal and for long runs."""

    def __init__(self, wanted: bool | None, n: int) -> None:
        self.wanted, self.n, self.bar = wanted, n, None

    def __enter__(self) -> Any:
        show = self.wanted
        if show is None:
            show = sys.stderr.isatty() and self.n * (self.n - 1) >= PROGRESS_MIN_PAIRS
        if not show:
            return None
        from rich.console import Console
        from rich.progress import Progress

        self.bar = Progress(console=Console(stderr=True), transient=True)  # stdout stays for results
        self.bar.__enter__()
        return self.bar

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def mbr_generate(
    model: Any,
    tokenizer: Any,
    prompt: str,
    constraint: Constraint | None = None,
    *,
    n: int = 8,
    utility: Utility | str = "chrf",
    method: Method = "full",
    references: int | None = None,
    temperature: float = 0.7,
    max_new_tokens: int = 128,
    chat: bool | None = None,
    system: str | None = None,
    seed: int | None = None,
    progress: bool | None = None,
    **generate_kwargs: Any,
) -> MBRResult:
    """Sample `n` candidates for `prompt` (under `constraint`) and return the MBR selection.

    `utility="judge"` uses the generating model as the judge; pass a `Judge(...)` for another.

    Example:
        >>> result = mbr_generate(model, tok, "2+2=?", n=4, utility="exact")   # doctest: +SKIP
        >>> result.text, result.expected
    """
    check_n(n)
    if isinstance(utility, str) and utility == "judge":
        from .utilities import Judge

        utility = Judge(model, tokenizer, chat=chat)
    sampler = MBR(utility, method=method, references=references, seed=seed if seed is not None else 0, progress=progress)
    return sampler.generate(
        model, tokenizer, prompt, constraint, n=n, temperature=temperature, max_new_tokens=max_new_tokens,
        chat=chat, system=system, seed=seed, **generate_kwargs,
    )
