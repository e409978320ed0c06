"""vLLM plugin: guide constraints per request, as a logits processor.

Registered through the `vllm.logits_processors` entry point, so an engine with guide installed
loads it by itself. A request opts in with its extra arguments, and every other request runs
untouched:

    SamplingParams(extra_args={"guide": {"json_schema": schema}})        # offline LLM.generate
    {"vllm_xargs": {"json_schema": "<schema JSON text>"}}                  # OpenAI server body
    {"vllm_xargs": {"regex": "[0-9]{3}"}}, {"vllm_xargs": {"lark": "...", "lark_start": "start"}}
    {"vllm_xargs": {"guide": "{\"choice\": [\"yes\", \"no\"]}"}}           # the full form as JSON text

One class serves both of vLLM's interfaces (see ECOSYSTEM.md 2.2): the V1 runner (CPU, and GPU
without Triton) calls `update_state` / `apply(logits)`; Model Runner V2 calls `add_request` /
`apply(logits, ctx)`. Specs are checked in `validate_params`, which vLLM runs at admission, so a
bad spec fails only its own request (HTTP 400 over the server). Compiled guides come from the
shared compile cache, so requests with the same spec share one compiled object; each request
keeps one matcher advanced from its token history, and the masks of all constrained rows go
through `guide.bitmask.apply_bitmask` in one call.
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality
from vllm.v1.sample.logits_processor import LogitsProcessor as _V1LogitsProcessor
from vllm.v1.worker.gpu.sample.logits_processor.interface import (
    LogitsContext,
    LogitsProcRequestState,
)
from vllm.v1.worker.gpu.sample.logits_processor.interface import (
    LogitsProcessor as _V2LogitsProcessor,
)

from ..bitmask import apply_bitmask, bitmask_width, bits_from_ids
from ..constraint import Compiled, Constraint, Matcher
from ..errors import GuideError
from ..vocab import Vocabulary

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.config import VllmConfig

log = logging.getLogger(__name__)

#: The constraint kinds a request may name; exactly one per request.
KINDS = ("json_schema", "regex", "lark", "choice", "tools")
#: Extra keys of the full form, and their flat `vllm_xargs` spelling: `start` (lark's start
#: rule), `allow_text` (tools: plain text instead of calls is allowed, default true), `reason`
#: (free <think> reasoning first, CRANE-style) with `max_reasoning_tokens`.
_OPTIONS = {
    "start": "lark_start",
    "allow_text": "tools_allow_text",
    "reason": "reason",
    "max_reasoning_tokens": "max_reasoning_tokens",
}
_FLAT_KEYS = (*KINDS, *_OPTIONS.values())
#: Largest spec (characters of its text / canonical JSON) a request may carry; bigger ones are
#: refused at admission, before any parsing work. `GUIDE_VLLM_MAX_SPEC_CHARS` overrides it.
MAX_SPEC_CHARS = int(os.environ.get("GUIDE_VLLM_MAX_SPEC_CHARS", str(64 * 1024)))


class _Invalid(ValueError):
    """A request's guide arguments are malformed (vLLM turns ValueError into HTTP 400)."""


def _request_args(extra_args: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The full-form dict of a request's guide arguments, or None when it has none."""
    if not extra_args:
        return None
    flat = {k: extra_args[k] for k in _FLAT_KEYS if k in extra_args}
    _reject_near_misses(extra_args)
    if "guide" not in extra_args:
        if not flat:
            return None
        args = {_OPTIONS_BY_FLAT.get(k, k): v for k, v in flat.items()}
        if not any(k in args for k in KINDS):
            raise _Invalid(f"guide: {sorted(flat)} given without a constraint; add one of {', '.join(KINDS)}")
        return args
    if flat:
        raise _Invalid(f"guide: give the constraint either as extra_args['guide'] or as {sorted(flat)}, not both")
    raw = extra_args["guide"]
    if isinstance(raw, str):
        if len(raw) > MAX_SPEC_CHARS:
            raise _Invalid(f"guide: the spec has {len(raw)} characters, more than the limit of {MAX_SPEC_CHARS}")
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise _Invalid(f"guide: extra_args['guide'] is not valid JSON: {exc}") from None
    if not isinstance(raw, Mapping):
        raise _Invalid(
            f"guide: extra_args['guide'] must be an object like {{\"regex\": \"...\"}}, not {type(raw).__name__}"
        )
    unknown = sorted(k for k in raw if k not in KINDS and k not in _OPTIONS)
    if unknown:
        raise _Invalid(
            f"guide: unknown constraint kind {unknown[0]!r} in extra_args['guide']; "
            f"expected one of {', '.join(KINDS)} (options: {', '.join(_OPTIONS)})"
        )
    return dict(raw)


_OPTIONS_BY_FLAT = {flat: name for name, flat in _OPTIONS.items()}


def _reject_near_misses(extra_args: Mapping[str, Any]) -> None:
    """Other plugins share extra_args, so unknown keys pass; but a misspelt kind ("json_shema")
    or a `guide_*` key is surely meant for guide, and ignoring it would silently drop the constraint."""
    for key in extra_args:
        if key in _FLAT_KEYS or key == "guide" or not isinstance(key, str):
            continue
        close = difflib.get_close_matches(key, (*_FLAT_KEYS, "guide"), n=1, cutoff=0.8)
        if close or key.startswith("guide_"):
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise _Invalid(
                f"guide: unknown constraint kind {key!r} in the request's extra args{hint} "
                f"(expected one of {', '.join(KINDS)})"
            )


def _decoded(kind: str, value: Any) -> Any:
    """A spec given as JSON text, parsed (anything else as it is)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise _Invalid(f"guide: {kind} is not valid JSON: {exc}") from None


def _canonical(kind: str, value: Any) -> str:
    """The spec as text: the cache key of `_build_spec`, and what the size limit counts."""
    if isinstance(value, str) and len(value) > MAX_SPEC_CHARS:  # before parsing it
        raise _Invalid(f"guide: the {kind} spec has {len(value)} characters, more than the limit of {MAX_SPEC_CHARS}")
    if kind == "json_schema":
        value = _decoded(kind, value)
        if not isinstance(value, (Mapping, bool)):
            raise _Invalid(f"guide: json_schema must be an object or a boolean, not {type(value).__name__}")
        return json.dumps(value, separators=(",", ":"))  # key order kept: it is the property order
    if kind == "choice":
        if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
            raise _Invalid("guide: choice must be a list of strings")
        return json.dumps(list(value))
    if kind == "tools":
        value = _decoded(kind, value)
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise _Invalid("guide: tools must be a list of tool schemas (OpenAI style or {name, parameters})")
        return json.dumps(list(value), separators=(",", ":"))
    if not isinstance(value, str):
        raise _Invalid(f"guide: {kind} must be a string, not {type(value).__name__}")
    return value


def parse_request(extra_args: Mapping[str, Any] | None) -> Constraint | None:
    """The constraint a request asks for (None: unconstrained).

    Raises:
        ValueError: malformed arguments, an unknown kind, an oversized spec, or a spec that
            guide rejects (the message is guide's, with the JSON pointer / position it names).
    """
    try:
        return _parse(extra_args)
    except RecursionError:  # absurdly nested JSON text
        raise _Invalid("guide: the spec is nested too deeply") from None


def _parse(extra_args: Mapping[str, Any] | None) -> Constraint | None:
    args = _request_args(extra_args)
    if args is None:
        return None
    kinds = [k for k in KINDS if k in args]
    if len(kinds) != 1:
        raise _Invalid(f"guide: give exactly one constraint kind ({', '.join(KINDS)}), got {kinds}")
    kind = kinds[0]
    start = args.get("start", "start")
    if "start" in args and kind != "lark":
        raise _Invalid(f"guide: 'start' only applies to lark grammars, not to {kind}")
    if not isinstance(start, str):
        raise _Invalid(f"guide: start must be a string, not {type(start).__name__}")
    if "allow_text" in args and kind != "tools":
        raise _Invalid(f"guide: 'allow_text' only applies to tools, not to {kind}")
    allow_text = _flag(args, "allow_text", default=True)
    reason = _flag(args, "reason", default=False)
    cap = args.get("max_reasoning_tokens", 256)
    if "max_reasoning_tokens" in args and not reason:
        raise _Invalid("guide: 'max_reasoning_tokens' needs 'reason': true")
    if isinstance(cap, str) and cap.isdigit():  # vllm_xargs values arrive as text
        cap = int(cap)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise _Invalid(f"guide: max_reasoning_tokens must be a positive integer, not {cap!r}")
    text = _canonical(kind, args[kind])
    if len(text) > MAX_SPEC_CHARS:
        raise _Invalid(f"guide: the {kind} spec has {len(text)} characters, more than the limit of {MAX_SPEC_CHARS}")
    spec = _build_spec(kind, text, start, allow_text)
    return _reasoning(spec, cap) if reason else spec


def _flag(args: Mapping[str, Any], name: str, *, default: bool) -> bool:
    value = args.get(name, default)
    if isinstance(value, str) and value.lower() in ("true", "false"):  # vllm_xargs text
        value = value.lower() == "true"
    if not isinstance(value, bool):
        raise _Invalid(f"guide: {name} must be true or false, not {value!r}")
    return value


@functools.lru_cache(maxsize=256)
def _reasoning(spec: Constraint, cap: int) -> Constraint:
    """CRANE-style: free reasoning in <think>...</think> (at most `cap` tokens), then `spec`."""
    from ..reasoning import reasoning_then

    return reasoning_then(spec, max_reasoning_tokens=cap)


@functools.lru_cache(maxsize=256)
def _build_spec(kind: str, text: str, start: str, allow_text: bool = True) -> Constraint:
    """Spec objects by canonical text: validation and engine share one parse per distinct spec."""
    try:
        if kind == "json_schema":
            from ..grammars.json_schema import json_schema

            return json_schema(text)
        if kind == "regex":
            from ..grammars.regex import regex

            spec = regex(text)
            # The byte automaton needs no tokenizer: build it here so that a pattern too large
            # for its budget (or matching nothing) fails at admission, not inside the engine.
            dfa = spec.byte_dfa()
            if dfa.initial == dfa.dead:
                raise _Invalid(f"guide: invalid regex: {text!r} matches no string at all")
            return spec
        if kind == "choice":
            from ..grammars.regex import choice

            return choice(json.loads(text))
        if kind == "tools":
            from ..tool_calls import tools

            # the documented JSON envelope {"tool_calls": [...]}: the plugin has no chat template
            return tools(json.loads(text), allow_text=allow_text, format="json")
        from ..grammars.cfg import grammar

        return grammar(text, start=start)
    except GuideError as exc:
        raise _Invalid(f"guide: invalid {kind}: {exc}") from exc
    except RecursionError:
        raise _Invalid(f"guide: the {kind} spec is nested too deeply") from None


class _Request:
    """One constrained request: its matcher and how much of its output it has consumed."""

    __slots__ = ("consumed", "dead", "matcher", "output")

    def __init__(self, matcher: Matcher | None, output: list[int] | None) -> None:
        self.matcher = matcher
        self.output = output  # V1: vLLM's live list of output ids; V2: None (read from req_states)
        self.consumed = 0
        self.dead = matcher is None  # compile failed or a forbidden token came in: EOS only

    def advance(self, tokens: Sequence[int]) -> None:
        matcher = self.matcher
        for t in tokens:
            self.consumed += 1
            if self.dead or matcher is None:
                continue
            if matcher.is_finished():
                continue  # EOS (or the next token after it with ignore_eos) past the end
            if not matcher.advance(int(t)):
                log.error("guide: token %d is not allowed by the request's constraint; ending it", t)
                self.dead = True


class GuideVLLMLogitsProcessor(_V1LogitsProcessor, _V2LogitsProcessor):
    """guide constraints for vLLM, under both the V1 runner and Model Runner V2."""

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        """Parse the request's spec at admission; ValueError fails just that request (HTTP 400)."""
        if parse_request(sampling_params.extra_args) is None:
            return
        if sampling_params.min_tokens:
            raise _Invalid(
                "guide: min_tokens cannot be combined with a guide constraint "
                "(it would forbid the EOS that ends a complete constrained text)"
            )

    def __init__(self, vllm_config: VllmConfig, *args: Any) -> None:
        # V1: (vllm_config, device, is_pin_memory); V2: (vllm_config, req_states).
        self._vllm_config = vllm_config
        model_config = vllm_config.model_config
        self._width = int(model_config.get_vocab_size())
        if len(args) == 1:
            self._req_states: LogitsProcRequestState | None = args[0]
            max_rows = int(args[0].max_num_reqs)
        elif len(args) == 2:
            self._req_states = None
            max_rows = int(vllm_config.scheduler_config.max_num_seqs)
        else:
            raise TypeError(f"GuideVLLMLogitsProcessor takes (vllm_config, req_states) or "
                            f"(vllm_config, device, is_pin_memory), got {1 + len(args)} arguments")
        self._requests: dict[int, _Request] = {}  # V1: batch row -> request; V2: slot -> request
        self._bitmask = np.zeros((max_rows, bitmask_width(self._width)), dtype=np.int32)
        self._vocab: Vocabulary | None = None
        # Until the vocabulary exists (or if it cannot be built), the model config's EOS ids.
        eos = getattr(model_config.hf_config, "eos_token_id", None)
        eos_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        self._eos_mask = bits_from_ids([i for i in eos_ids if 0 <= i < self._width], self._width)

    # -- shared --------------------------------------------------------------------------------

    def vocab(self) -> Vocabulary:
        """The engine's vocabulary, built from its tokenizer on the first constrained request."""
        if self._vocab is None:
            from transformers import AutoTokenizer

            mc = self._vllm_config.model_config
            tok = AutoTokenizer.from_pretrained(
                mc.tokenizer, revision=mc.tokenizer_revision, trust_remote_code=mc.trust_remote_code
            )
            eos = getattr(mc.hf_config, "eos_token_id", None)
            self._vocab = Vocabulary.from_tokenizer(tok, self._width, eos_token_id=eos)
            self._eos_mask = bits_from_ids(sorted(self._vocab.eos_ids), self._width)
        return self._vocab

    def _new_request(self, params: SamplingParams, output: list[int] | None) -> _Request | None:
        """The request's state, or None when it asks for no constraint.

        Failures here would stop the engine loop for every request, so they end just this
        request (EOS only) and are logged: a spec validate_params let through but the engine
        cannot use (say, a language the vocabulary cannot spell), or a tokenizer guide cannot read.
        """
        try:
            spec = parse_request(params.extra_args)
            if spec is None:
                return None
            compiled: Compiled | None = spec.compile(self.vocab())
        except (GuideError, ValueError, OSError) as exc:
            log.error("guide: cannot constrain the request, ending it with EOS: %s", exc)
            compiled = None
        return _Request(compiled.matcher() if compiled is not None else None, output)

    def _fill(self, row: int, req: _Request) -> None:
        matcher = req.matcher
        if req.dead or matcher is None or matcher.is_finished():
            self._bitmask[row] = self._eos_mask
            return
        matcher.fill_bitmask(self._bitmask, row)
        if not self._bitmask[row].any():
            log.error("guide: the constraint allows no token after %d tokens; ending the request", req.consumed)
            req.dead = True
            self._bitmask[row] = self._eos_mask

    def _reserve(self, rows: int) -> None:
        if rows > self._bitmask.shape[0]:  # e.g. V2 with draft rows
            self._bitmask = np.zeros((rows, self._bitmask.shape[1]), dtype=np.int32)

    def _apply_rows(self, logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
        n = logits.shape[0]
        mask: torch.Tensor | np.ndarray = self._bitmask[:n]
        if logits.device.type != "cpu":
            mask = torch.from_numpy(self._bitmask[:n]).to(logits.device, non_blocking=True)
        apply_bitmask(logits, mask, np.asarray(rows, dtype=np.int64), vocab_size=self._width)
        return logits

    # -- V1 runner -----------------------------------------------------------------------------

    def is_argmax_invariant(self) -> bool:
        return False  # a mask changes greedy picks too

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        requests = self._requests
        for index in batch_update.removed:
            requests.pop(index, None)
        for index, params, _prompt, output in batch_update.added:
            req = self._new_request(params, output)
            if req is None:
                requests.pop(index, None)
            else:
                requests[index] = req
        for a, b, direction in batch_update.moved:
            ra, rb = requests.pop(a, None), requests.pop(b, None)
            if ra is not None:
                requests[b] = ra
            if rb is not None and direction == MoveDirectionality.SWAP:
                requests[a] = rb

    def apply(self, logits: torch.Tensor, ctx: LogitsContext | None = None) -> torch.Tensor:
        if not self._requests:
            return logits
        self._reserve(logits.shape[0])
        if ctx is not None:
            return self._apply_v2(logits, ctx)
        rows = sorted(self._requests)
        for row in rows:
            req = self._requests[row]
            assert req.output is not None
            if len(req.output) > req.consumed:
                req.advance(req.output[req.consumed :])
            self._fill(row, req)
        return self._apply_rows(logits, rows)

    # -- Model Runner V2 (GPU; run here only with stand-in state, see docs/vllm.md) -------------

    def add_request(self, req_idx: int, sampling_params: SamplingParams) -> bool:
        req = self._new_request(sampling_params, None)
        if req is None:
            self._requests.pop(req_idx, None)
            return False
        self._requests[req_idx] = req
        return True

    def apply_staged_writes(self) -> None:
        return None

    def _apply_v2(self, logits: torch.Tensor, ctx: LogitsContext) -> torch.Tensor:
        states = self._req_states
        assert states is not None
        slots_of_rows = ctx.expanded_idx_mapping.tolist()
        rows = [r for r, slot in enumerate(slots_of_rows) if slot in self._requests]
        if not rows:
            return logits
        slots = sorted({slots_of_rows[r] for r in rows})
        totals = states.total_len.gpu[torch.as_tensor(slots, device=states.total_len.gpu.device)].tolist()
        for slot, total in zip(slots, totals):
            req = self._requests[slot]
            start = int(states.prompt_len.np[slot]) + req.consumed
            if total > start:
                req.advance(states.all_token_ids.gpu[slot, start:total].tolist())
        if len(slots_of_rows) == len(ctx.idx_mapping_np):  # one row per request
            for row in rows:
                self._fill(row, self._requests[slots_of_rows[row]])
            return self._apply_rows(logits, rows)
        # Speculative decoding: a request's rows are consecutive, and row k (local position k)
        # predicts the token after the committed text plus the drafts fed at its rows 1..k.
        local = ctx.expanded_local_pos.tolist()
        fed = ctx.input_ids.tolist()
        draft: _Request | None = None
        for row in rows:
            req = self._requests[slots_of_rows[row]]
            if local[row] == 0:
                draft = _Request(req.matcher.fork() if req.matcher is not None else None, None)
                draft.dead = req.dead
                draft.consumed = req.consumed
            else:
                assert draft is not None
                m = draft.matcher
                if not draft.dead and m is not None and not m.is_finished() and not m.advance(fed[row]):
                    draft.dead = True  # the previous row's mask forbids this draft, so it is rejected
            self._fill(row, draft)
        return self._apply_rows(logits, rows)


__all__ = ["KINDS", "MAX_SPEC_CHARS", "GuideVLLMLogitsProcessor", "parse_request"]
