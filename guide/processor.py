"""The transformers `LogitsProcessor` that applies constraints to `model.generate`.

State is keyed by each row's generated-token prefix, never by row index: beam search reorders
rows between steps, finished rows keep receiving pad tokens, and `num_return_sequences`
expands every prompt into several rows.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from transformers import LogitsProcessor

from .bitmask import apply_bitmask, bitmask_width, bits_from_ids
from .constraint import Compiled, Constraint, Matcher
from .errors import ConstraintViolation, GuideDeadEnd
from .vocab import Vocabulary

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

DeadEndPolicy = Literal["raise", "eos"]
_Key = tuple[int, tuple[int, ...]]


class GuideLogitsProcessor(LogitsProcessor):
    """Masks every row's logits to the tokens its constraint allows.

    Reusable across `generate` calls: a new prompt (or batch shape) resets the state.
    Not thread-safe: use one processor per concurrent `generate` call (compiled constraints
    are shared safely).
    """

    supports_continuous_batching = False  # needs per-row token histories, which CB does not pass

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        constraints: Constraint | Sequence[Constraint],
        *,
        on_dead_end: DeadEndPolicy = "raise",
        eos_token_id: int | Sequence[int] | None = None,
    ) -> None:
        if on_dead_end not in ("raise", "eos"):
            raise ValueError(f"`on_dead_end` has to be 'raise' or 'eos', but is {on_dead_end!r}")
        if isinstance(constraints, Constraint):
            self._specs: tuple[Constraint, ...] = (constraints,)
            self._shared = True
        else:
            self._specs = tuple(constraints)
            self._shared = False
            if not self._specs or not all(isinstance(c, Constraint) for c in self._specs):
                raise TypeError("`constraints` has to be a Constraint or a non-empty sequence of Constraints")
        self.tokenizer = tokenizer
        self.on_dead_end = on_dead_end
        self._eos_token_id = eos_token_id
        self.vocab: Vocabulary | None = None
        self._compiled: tuple[Compiled, ...] = ()
        self._prompt: torch.Tensor | None = None
        self._states: dict[_Key, Matcher] = {}
        self._bitmask = np.zeros((0, 0), dtype=np.int32)
        self._pad_mask = np.zeros(0, dtype=np.int32)
        #: rows whose last token the constraint had forbidden (only beam search can produce them,
        #: from candidates with -inf score); they are limited to EOS.
        self.violations = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def _is_continuation(self, input_ids: torch.Tensor, width: int) -> bool:
        prompt = self._prompt
        if prompt is None or self.vocab is None or width != self.vocab.model_width:
            return False
        rows, length = input_ids.shape
        if rows != prompt.shape[0] or length != self._length + 1:
            return False
        return bool(torch.equal(input_ids[:, : prompt.shape[1]], prompt))

    def _reset(self, input_ids: torch.Tensor, width: int) -> None:
        if self.vocab is None or self.vocab.model_width != width:
            self.vocab = Vocabulary.from_tokenizer(self.tokenizer, width, eos_token_id=self._eos_token_id)
            self._compiled = tuple(spec.compile(self.vocab) for spec in self._specs)
            pad = self.tokenizer.pad_token_id
            extra = [pad] if pad is not None and pad < width else []
            self._pad_mask = bits_from_ids(sorted(self.vocab.eos_ids) + extra, width)
        rows = input_ids.shape[0]
        groups = len(self._compiled)
        if not self._shared and rows % groups:
            raise ValueError(
                f"got {groups} constraints for a batch of {rows} rows; give one constraint per prompt"
            )
        self._rows_per_group = 1 if self._shared else rows // groups
        self._prompt = input_ids.clone()
        self._length = input_ids.shape[1] - 1  # so that the prompt itself reads as the next step
        self._states = {}
        if self._bitmask.shape != (rows, bitmask_width(width)):
            self._bitmask = np.empty((rows, bitmask_width(width)), dtype=np.int32)

    def replay(self, tokens: Sequence[int], *, prompt_index: int = 0) -> Matcher:
        """A fresh matcher advanced through `tokens`, e.g. to check that an output is complete."""
        if not self._compiled:
            raise RuntimeError("the processor has not been called yet")
        matcher = self._compiled[0 if self._shared else prompt_index].matcher()
        for i, t in enumerate(tokens):
            if not matcher.advance(t):
                raise ConstraintViolation(f"token {t} is not allowed after the tokens {list(tokens[:i])!r}")
        return matcher

    # -- the step ----------------------------------------------------------------------------

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows, width = scores.shape
        if not self._is_continuation(input_ids, width):
            self._reset(input_ids, width)
        self._length = input_ids.shape[1]
        assert self._prompt is not None and self.vocab is not None
        generated = input_ids[:, self._prompt.shape[1] :].tolist()
        keys = [self._key(r, gen) for r, gen in enumerate(generated)]
        self._states = self._step_states(keys)
        bitmask = self._bitmask
        for r, key in enumerate(keys):
            matcher = self._states[key]
            if matcher is None:
                bitmask[r] = self._pad_mask
            elif matcher.is_finished() and matcher.is_accepting():
                bitmask[r] = self._pad_mask
            else:
                matcher.fill_bitmask(bitmask, r)
        self._handle_dead_ends(bitmask, keys)
        if scores.device.type != "cpu":
            bitmask = torch.from_numpy(bitmask).to(scores.device, non_blocking=True)
        apply_bitmask(scores, bitmask)
        return scores

    def _key(self, row: int, generated: list[int]) -> _Key:
        return (0 if self._shared else row // self._rows_per_group, tuple(generated))

    def _step_states(self, keys: Iterable[_Key]) -> dict[_Key, Matcher]:
        """Advance each parent state by its row's newest token; forks only where beams branch."""
        keys = list(dict.fromkeys(keys))
        children = Counter((g, gen[:-1]) for g, gen in keys if gen)
        states: dict[_Key, Matcher] = {}
        for key in keys:
            group, gen = key
            if not gen:
                states[key] = self._compiled[group].matcher()
                continue
            parent_key = (group, gen[:-1])
            parent = self._states.get(parent_key)
            if parent is None:  # the parent was a violation row, or history we never saw
                states[key] = None  # type: ignore[assignment]
                continue
            if parent.is_finished() and parent.is_accepting():
                states[key] = parent  # finished rows only ever receive EOS / pad
                continue
            matcher = parent.fork() if children[parent_key] > 1 else parent
            if not matcher.advance(gen[-1]):
                self.violations += 1
                log.debug("row with prefix %r took a forbidden token %d", gen[:-1], gen[-1])
                matcher = None  # type: ignore[assignment]
            states[key] = matcher
        return states

    def _handle_dead_ends(self, bitmask: np.ndarray, keys: list[_Key]) -> None:
        dead = np.flatnonzero(~bitmask.any(axis=1))
        for r in dead.tolist():
            if self.on_dead_end == "eos":
                bitmask[r] = self._pad_mask
                continue
            assert self.vocab is not None
            prefix = self.vocab.decode(keys[r][1])
            raise GuideDeadEnd(
                f"row {r}: no token can continue the constrained text {prefix.decode('utf-8', 'replace')!r} "
                "(pass on_dead_end='eos' to end such rows instead)",
                row=r,
                prefix=prefix,
            )


def constrain(
    tokenizer: PreTrainedTokenizerBase,
    constraint: Constraint | Sequence[Constraint],
    *,
    on_dead_end: DeadEndPolicy = "raise",
    eos_token_id: int | Sequence[int] | None = None,
) -> GuideLogitsProcessor:
    """A logits processor for `model.generate(..., logits_processor=[...])`.

    Args:
        tokenizer: the model's tokenizer (its byte view is built once and cached).
        constraint: one constraint shared by all rows, or one per prompt of the batch.
        on_dead_end: "raise" (`GuideDeadEnd` naming the prefix) or "eos" (end such rows).
        eos_token_id: extra EOS ids, e.g. `model.generation_config.eos_token_id` (may be a list).

    Example:
        >>> proc = guide.constrain(tok, guide.regex(r"\\d{3}-\\d{4}"))
        >>> out = model.generate(**inputs, logits_processor=[proc])
    """
    return GuideLogitsProcessor(tokenizer, constraint, on_dead_end=on_dead_end, eos_token_id=eos_token_id)
