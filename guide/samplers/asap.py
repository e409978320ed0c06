"""Grammar-aligned sampling (ASAp, Park et al., "Grammar-Aligned Decoding", NeurIPS 2024) and plain
grammar-constrained sampling (GCD) for comparison.

Target. With P_T the model's distribution at temperature T (T folded into the softmax, no other
warper), ASAp samples token sequences w (ending with an EOS id) from

    Q(w) = P_T(w) * 1[w allowed by the constraint and len(w) <= max_new_tokens + 1] / Z.

GCD (masking and renormalising at every step) samples from prod_i P_T(w_i | u) / A(u), with
A(u) the allowed mass after prefix u; that inflates strings whose prefixes have little viable
mass. ASAp keeps, per prompt, a trie over token-id prefixes. Each expanded node u caches the
model's conditional restricted to the allowed tokens (so a repeated prefix costs no forward pass)
and an upper bound c_hat(u) >= EFG(u), the expected future grammaticality. Unvisited children
count as 1, EOS children are 1, disallowed tokens 0:

    c_hat(u) = A(u) - sum_{visited children c} P_T(c | u) * (1 - c_hat(u.c))

Sampling at u draws t with probability proportional to P_T(t | u) * c_hat(u.t). Bounds only
decrease; once every viable prefix of a finite language is expanded they equal EFG exactly and
the sampler's distribution is Q exactly.

Semantics worth knowing:
- `max_new_tokens` is part of the target: at depth `max_new_tokens` only EOS is allowed, so a
  prefix that cannot finish in time is a dead end (bound 0), not a truncated output.
- Dead ends (an empty allowed set) set the node's bound to 0, propagate it, and restart the
  sample; `max_restarts` consecutive restarts raise `GuideDeadEnd`. A root bound of 0 means the
  language (within `max_new_tokens`) is empty: `EmptyLanguageError`.
- `depth_cap`: prefixes longer than the cap get no trie node. Below the cap the sampler is plain
  GCD (children count as 1, no caching of conditionals, dead ends restart without learning), so
  the exactness guarantee degrades to "exact up to the cap, GCD-biased beyond it". The default
  cap is `max_new_tokens` (no degradation).
- Q is over token sequences: two tokenizations of one string are two outcomes.
- A model call computes the logits after prompt + prefix. For transformers models the prompt's
  KV cache is computed once per prompt (verified against a full pass) and copied per call, so a
  call costs only the prefix; other models (any `model(input_ids=...).logits`) recompute from
  scratch. The trie makes repeated prefixes free. Samples are drawn one at a time (batch 1).
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..bitmask import bitmask_width, unpack_bool
from ..constraint import Constraint, Matcher
from ..errors import EmptyLanguageError, GuideDeadEnd, GuideError, SamplerConfigError, TokenizerError
from ..vocab import Vocabulary

_TRIE_FORMAT = 1

#: keyword arguments of `model.generate` that would change the sampled distribution.
_WARPERS = (
    "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "repetition_penalty",
    "no_repeat_ngram_size", "num_beams", "do_sample", "logits_processor", "bad_words_ids",
    "length_penalty", "diversity_penalty", "encoder_repetition_penalty", "renormalize_logits",
)


@dataclass(frozen=True)
class SampleDiagnostics:
    """Counters at the time a sample was returned (cumulative over the sampler's prompt)."""

    trie_nodes: int  #: expanded trie nodes (ASAp) / cached conditionals (GCD) for this prompt
    forward_passes: int  #: model calls made so far for this prompt
    forward_passes_saved: int  #: steps served from the cache instead of a model call
    restarts: int  #: dead-end restarts during this sample
    root_bound: float  #: ASAp: c_hat(root), an upper bound on Z; GCD: nan


@dataclass(frozen=True)
class Sample:
    """One sampled sequence. `token_ids` excludes the final EOS (`eos_id`)."""

    text: str
    token_ids: list[int]
    eos_id: int
    logprob: float  #: log P(w) under the model at temperature 1, EOS included
    target_logprob: float  #: log P_T(w) at the sampler's temperature, EOS included
    diagnostics: SampleDiagnostics


@dataclass
class _Dist:
    """The model's conditional after one prefix, restricted to the allowed token ids."""

    ids: np.ndarray  # int64 [k], sorted
    p: np.ndarray  # float64 [k], P_T(t | u) from the full-vocabulary softmax at temperature T
    logp_raw: np.ndarray  # float64 [k], log P(t | u) at temperature 1
    is_eos: np.ndarray  # bool [k]

    @property
    def total(self) -> float:
        return float(self.p.sum())


class _Node:
    __slots__ = ("parent", "token", "depth", "dist", "children", "c_hat")

    def __init__(self, parent: _Node | None, token: int | None, depth: int) -> None:
        self.parent = parent
        self.token = token
        self.depth = depth
        self.dist: _Dist | None = None
        self.children: dict[int, tuple[int, _Node]] = {}  # token -> (index into dist, node)
        self.c_hat = 1.0

    def recompute(self) -> bool:
        """Refresh c_hat from the children; True when it changed."""
        dist = self.dist
        assert dist is not None
        n_text = int((~dist.is_eos).sum())
        if len(self.children) == n_text:  # every allowed child visited: exact sum
            value = float(dist.p[dist.is_eos].sum()) + sum(dist.p[i] * c.c_hat for i, c in self.children.values())
        else:
            value = dist.total - sum(dist.p[i] * (1.0 - c.c_hat) for i, c in self.children.values())
        value = min(max(float(value), 0.0), self.c_hat)
        changed = value != self.c_hat
        self.c_hat = value
        return changed

    def weights(self) -> np.ndarray:
        assert self.dist is not None
        w = self.dist.p.copy()
        for i, child in self.children.values():
            w[i] *= child.c_hat
        return w


class EFGTrie:
    """The EFG trie of one prompt: nodes keyed by token-id prefix (EOS excluded), each holding
    c_hat, an upper bound on the prefix's expected future grammaticality. Read it with
    `bound(prefix)` and `items()`; `expanded` counts the nodes whose conditional is cached."""

    def __init__(self) -> None:
        self.root = _Node(None, None, 0)
        self.expanded = 0

    def node(self, prefix: Sequence[int]) -> _Node | None:
        node: _Node | None = self.root
        for t in prefix:
            entry = node.children.get(t) if node is not None else None
            node = entry[1] if entry is not None else None
        return node

    def bound(self, prefix: Sequence[int]) -> float:
        """c_hat(prefix): 1.0 for a prefix the trie has not seen."""
        node = self.node(prefix)
        return 1.0 if node is None else node.c_hat

    def items(self) -> Iterator[tuple[tuple[int, ...], float]]:
        """(prefix, c_hat) for every node, depth first."""
        stack: list[tuple[tuple[int, ...], _Node]] = [((), self.root)]
        while stack:
            prefix, node = stack.pop()
            yield prefix, node.c_hat
            stack.extend((prefix + (t,), child) for t, (_, child) in node.children.items())

    @staticmethod
    def propagate(node: _Node) -> None:
        current: _Node | None = node
        while current is not None and current.dist is not None and current.recompute():
            current = current.parent


@dataclass
class _PromptState:
    prompt_ids: list[int]
    trie: EFGTrie = field(default_factory=EFGTrie)
    cache: dict[tuple[int, ...], _Dist] = field(default_factory=dict)
    forward_passes: int = 0
    saved: int = 0
    kv: Any = None  # the prompt's KV cache (all but the last prompt token)
    kv_mode: bool | None = None  # None: not decided yet
    kv_arg: str = "cache"  # the forward() keyword that takes it


@dataclass(frozen=True)
class Enumeration:
    """The exact target of a finite language, found by depth-first search over token sequences.

    Keys are token-id tuples without the EOS; Q, Q_GCD and P_T are probabilities of the full
    sequence (summed over EOS ids). `efg` maps every viable prefix to EFG(prefix).
    """

    p: dict[tuple[int, ...], float]
    q: dict[tuple[int, ...], float]
    q_gcd: dict[tuple[int, ...], float]
    efg: dict[tuple[int, ...], float]
    z: float
    forward_passes: int


class _Sampler:
    """Shared set-up, prompt handling and the cached model conditional."""

    _name = "sampler"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        constraint: Constraint,
        *,
        temperature: float = 1.0,
        max_new_tokens: int = 128,
        chat: bool | None = None,
        system: str | None = None,
        seed: int | None = None,
        max_restarts: int = 1000,
        vocab: Vocabulary | None = None,
        prompt_cache: bool = True,
        **unsupported: Any,
    ) -> None:
        if unsupported:
            bad = sorted(unsupported)
            warpers = [k for k in bad if k in _WARPERS]
            hint = (
                f" {warpers} would change the distribution {self._name} samples from; only `temperature` "
                "is folded into the target" if warpers else ""
            )
            raise SamplerConfigError(f"{type(self).__name__} got unsupported arguments {bad}.{hint}")
        if not isinstance(constraint, Constraint):
            raise TypeError(f"`constraint` has to be a guide Constraint, not {type(constraint).__name__}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            math.isfinite(temperature) and temperature > 0
        ):
            raise SamplerConfigError(f"`temperature` has to be a finite float > 0, but is {temperature!r}")
        if operator.index(max_new_tokens) < 1:
            raise SamplerConfigError(f"`max_new_tokens` has to be >= 1, but is {max_new_tokens}")
        if operator.index(max_restarts) < 0:
            raise SamplerConfigError("`max_restarts` has to be >= 0")
        self.model = model
        self.tokenizer = tokenizer
        self.constraint = constraint
        self.temperature = float(temperature)
        self.max_new_tokens = int(max_new_tokens)
        self.max_restarts = int(max_restarts)
        self.chat = chat
        self.system = system
        self.prompt_cache = bool(prompt_cache)
        self.rng = np.random.default_rng(seed)
        if vocab is None:
            if tokenizer is None:
                raise SamplerConfigError("pass a tokenizer, or a `vocab=` for a model without one")
            from ..generate import eos_ids_of

            width = _logits_width(model, tokenizer)
            vocab = Vocabulary.from_tokenizer(tokenizer, width, eos_token_id=eos_ids_of(model, tokenizer))
        self.vocab = vocab
        self.compiled = constraint.compile(vocab)  # raises EmptyLanguageError for an empty spec
        self._eos = np.zeros(vocab.model_width, dtype=bool)
        self._eos[sorted(vocab.eos_ids)] = True
        self._row = np.zeros((1, bitmask_width(vocab.model_width)), dtype=np.int32)
        self._prompts: dict[tuple[int, ...], _PromptState] = {}

    # -- prompts ---------------------------------------------------------------------------
    def _prompt_ids(self, prompt: str | Sequence[int]) -> list[int]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise SamplerConfigError("a text prompt needs a tokenizer; pass token ids instead")
            from ..generate import format_prompt

            text = format_prompt(self.tokenizer, prompt, chat=self.chat, system=self.system)
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        else:
            ids = [operator.index(t) for t in prompt]
        if not ids:
            raise SamplerConfigError("the prompt is empty: a causal LM needs at least one input token")
        return ids

    def _state(self, prompt: str | Sequence[int]) -> _PromptState:
        ids = self._prompt_ids(prompt)
        key = tuple(ids)
        if key not in self._prompts:
            self._prompts[key] = _PromptState(ids)
        return self._prompts[key]

    def reset(self) -> None:
        """Forget every trie and cached conditional."""
        self._prompts.clear()

    # -- the model conditional ---------------------------------------------------------------
    def _conditional(self, state: _PromptState, prefix: tuple[int, ...], matcher: Matcher, *, cache: bool) -> _Dist:
        if cache:
            hit = state.cache.get(prefix)
            if hit is not None:
                state.saved += 1
                return hit
        dist = self._compute(state, prefix, matcher)
        if cache:
            state.cache[prefix] = dist
        return dist

    def _last_logits(self, state: _PromptState, prefix: tuple[int, ...]) -> Any:
        """Logits after prompt + prefix: a full forward pass, or, for transformers models, the
        prompt's KV cache (all but its last token, computed once and copied per call) plus the rest."""
        import torch

        device = getattr(self.model, "device", None)
        full = state.prompt_ids + list(prefix)
        if state.kv_mode is None:
            state.kv_mode = self.prompt_cache and self._init_prompt_cache(state)
        with torch.inference_mode():
            if state.kv_mode:
                cut = len(state.prompt_ids) - 1
                ids = torch.tensor([full[cut:]], dtype=torch.long, device=device)
                kwargs = {state.kv_arg: copy.deepcopy(state.kv)}
                out = self.model(input_ids=ids, use_cache=True, **kwargs)
            else:
                out = self.model(input_ids=torch.tensor([full], dtype=torch.long, device=device))
        return out.logits[0, -1]

    def _init_prompt_cache(self, state: _PromptState) -> bool:
        """Set up the prompt KV cache when the model is a transformers model that returns one, and
        keep it only if it reproduces a full forward pass (max |delta logit| <= 1e-3)."""
        import torch

        config = getattr(self.model, "config", None)
        if len(state.prompt_ids) < 2 or not getattr(config, "use_cache", False):
            return False
        # transformers 5 names the argument and the output field `cache`, 4.x `past_key_values`
        try:
            params = inspect.signature(self.model.forward).parameters
        except (TypeError, ValueError):
            return False
        arg = next((a for a in ("cache", "past_key_values") if a in params), None)
        if arg is None:
            return False
        device = getattr(self.model, "device", None)
        ids = state.prompt_ids
        with torch.inference_mode():
            head = self.model(input_ids=torch.tensor([ids[:-1]], device=device), use_cache=True)
            kv = getattr(head, arg, None)
            if kv is None:
                return False
            cached = self.model(input_ids=torch.tensor([ids[-1:]], device=device), use_cache=True,
                                **{arg: copy.deepcopy(kv)}).logits[0, -1]
            full = self.model(input_ids=torch.tensor([ids], device=device)).logits[0, -1]
        if float((cached.float() - full.float()).abs().max()) > 1e-3:
            return False
        state.kv, state.kv_arg = kv, arg
        return True

    def _compute(self, state: _PromptState, prefix: tuple[int, ...], matcher: Matcher) -> _Dist:
        logits = self._last_logits(state, prefix)
        state.forward_passes += 1
        z = logits.detach().double().cpu().numpy()
        if z.shape[0] != self.vocab.model_width:
            raise TokenizerError(
                f"the model returned {z.shape[0]} logits, the vocabulary is {self.vocab.model_width} wide"
            )
        if np.isnan(z).any():
            raise GuideError(f"the model returned NaN logits after prefix {list(prefix)}")
        self._row[0] = 0
        matcher.fill_bitmask(self._row, 0)
        allowed = unpack_bool(self._row[0], self.vocab.model_width)
        if len(prefix) >= self.max_new_tokens:
            allowed &= self._eos
        allowed &= z != -np.inf  # a -inf logit has probability 0: not a child
        idx = np.flatnonzero(allowed)
        logp_raw = z - _logsumexp(z)
        zt = z / self.temperature
        logp_t = zt - _logsumexp(zt)
        return _Dist(idx, np.exp(logp_t[idx]), logp_raw[idx], self._eos[idx])

    def _finish(self, state: _PromptState, tokens: list[int], eos: int, logp: float, logp_t: float,
                restarts: int, root_bound: float, nodes: int) -> Sample:
        text = self.vocab.decode_text(tokens)
        diag = SampleDiagnostics(nodes, state.forward_passes, state.saved, restarts, root_bound)
        return Sample(text, tokens, eos, logp, logp_t, diag)

    def _draw(self, weights: np.ndarray) -> int:
        cum = np.cumsum(weights)
        return int(min(np.searchsorted(cum, self.rng.random() * cum[-1], side="right"), len(cum) - 1))

    # -- public API ----------------------------------------------------------------------------
    def sample(self, prompt: str | Sequence[int], n: int = 1) -> list[Sample]:
        """Draw `n` samples for `prompt` (text, chat-templated as in `guide.generate`, or token ids)."""
        return list(self.iter_samples(prompt, n))

    def iter_samples(self, prompt: str | Sequence[int], n: int | None = None) -> Iterator[Sample]:
        """Yield samples one at a time (forever when `n` is None); learning carries across calls."""
        if n is not None and operator.index(n) < 0:
            raise SamplerConfigError(f"`n` has to be >= 0, but is {n}")
        state = self._state(prompt)
        count = 0
        while n is None or count < n:
            yield self._sample_one(state)
            count += 1

    def _sample_one(self, state: _PromptState) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def enumerate(self, prompt: str | Sequence[int], *, max_sequences: int = 100_000) -> Enumeration:
        """Exact Q, Q_GCD, P_T and EFG for a finite language by depth-first search (model calls
        are cached and shared with sampling). Raises `GuideError` past `max_sequences`."""
        state = self._state(prompt)
        before = state.forward_passes
        p: dict[tuple[int, ...], float] = {}
        q_gcd: dict[tuple[int, ...], float] = {}
        efg: dict[tuple[int, ...], float] = {}

        def visit(prefix: tuple[int, ...], matcher: Matcher, p_prefix: float, g_prefix: float) -> float:
            dist = self._conditional(state, prefix, matcher, cache=True)
            total = dist.total
            value = 0.0
            for t, pt, is_eos in zip(dist.ids.tolist(), dist.p.tolist(), dist.is_eos.tolist()):
                if is_eos:
                    p[prefix] = p.get(prefix, 0.0) + p_prefix * pt
                    q_gcd[prefix] = q_gcd.get(prefix, 0.0) + g_prefix * pt / total
                    value += pt
                    if len(p) > max_sequences:
                        raise GuideError(f"the language has more than {max_sequences} token sequences")
                    continue
                child = matcher.fork()
                if not child.advance(t):
                    raise GuideError(f"the constraint allowed token {t} and then refused it")
                value += pt * visit(prefix + (t,), child, p_prefix * pt, g_prefix * pt / total)
            efg[prefix] = value
            return value

        z = visit((), self.compiled.matcher(), 1.0, 1.0)
        if z <= 0.0:
            raise EmptyLanguageError(f"{self.constraint!r} allows no sequence within {self.max_new_tokens} tokens")
        q = {k: v / z for k, v in p.items()}
        return Enumeration(p, q, q_gcd, {k: v for k, v in efg.items() if v > 0}, z, state.forward_passes - before)


class ASAp(_Sampler):
    """Grammar-aligned sampling: converges to the model's distribution conditioned on `constraint`.

    Args:
        model: any causal LM whose `model(input_ids=...)` returns an object with `.logits`
            `[1, L, V]` (transformers models, or a toy module with that signature).
        tokenizer: its tokenizer (None when `vocab=` is given and prompts are token ids).
        constraint: any guide `Constraint` (regex, choice, CFG, JSON Schema, compositions).
        temperature: folded into the target (Q uses softmax(logits / T)); no other warper exists.
        max_new_tokens: longest sequence, EOS excluded; part of the target (see the module doc).
        depth_cap: deepest trie prefix, default `max_new_tokens`; below it ASAp degrades to GCD.
        chat, system: prompt formatting as in `guide.generate` (text prompts only).
        seed: seeds the sampler's own numpy generator.
        max_restarts: consecutive dead-end restarts before `GuideDeadEnd`.
        vocab: a ready `Vocabulary` (toy models); otherwise built from the tokenizer.
        prompt_cache: reuse the prompt's KV cache for transformers models (checked once per
            prompt against a full forward pass, dropped when they disagree); False: always
            recompute prompt + prefix from scratch.

    Raises:
        SamplerConfigError: warper arguments (top_k, top_p, ...) or invalid settings.
        EmptyLanguageError: the constraint allows nothing (at compile time, or once the trie
            proves that no sequence fits within `max_new_tokens`).
    """

    _name = "ASAp"

    def __init__(self, model: Any, tokenizer: Any, constraint: Constraint, *, depth_cap: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(model, tokenizer, constraint, **kwargs)
        cap = self.max_new_tokens if depth_cap is None else operator.index(depth_cap)
        if cap < 0:
            raise SamplerConfigError(f"`depth_cap` has to be >= 0, but is {depth_cap}")
        self.depth_cap = cap

    def trie(self, prompt: str | Sequence[int]) -> EFGTrie:
        """The EFG trie of `prompt` (`bound(prefix)`, `items()`, `expanded`)."""
        return self._state(prompt).trie

    def _signature(self, state: _PromptState) -> dict[str, Any]:
        config = getattr(self.model, "config", None)
        return {
            "format": _TRIE_FORMAT,
            "model": str(getattr(config, "name_or_path", "") or type(self.model).__name__),
            "vocab": self.vocab.fingerprint,
            "constraint": self.constraint.key,
            "temperature": self.temperature,
            "max_new_tokens": self.max_new_tokens,
            "depth_cap": self.depth_cap,
            "prompt_ids": state.prompt_ids,
        }

    def save_trie(self, prompt: str | Sequence[int]) -> str:
        """The learned trie of `prompt` as JSON (bounds and cached conditionals), to resume later."""
        state = self._state(prompt)
        nodes = []
        index: dict[int, int] = {}
        stack: list[_Node] = [state.trie.root]
        while stack:
            node = stack.pop()
            index[id(node)] = len(nodes)
            dist = node.dist
            nodes.append({
                "parent": index[id(node.parent)] if node.parent is not None else None,
                "token": node.token,
                "slot": node.parent.children[node.token][0] if node.parent is not None else None,
                "c_hat": node.c_hat,
                "dist": None if dist is None else [dist.ids.tolist(), dist.p.tolist(), dist.logp_raw.tolist()],
            })
            stack.extend(child for _, child in node.children.values())
        return json.dumps({"signature": self._signature(state), "nodes": nodes})

    def load_trie(self, prompt: str | Sequence[int], text: str) -> None:
        """Replace the trie of `prompt` by one saved with `save_trie` under the same model name,
        vocabulary, constraint, temperature, `max_new_tokens`, `depth_cap` and prompt."""
        state = self._state(prompt)
        data = json.loads(text)
        mine, theirs = self._signature(state), data.get("signature", {})
        if mine != theirs:
            differ = sorted(k for k in mine if mine.get(k) != theirs.get(k))
            raise SamplerConfigError(f"the saved trie was learned under different settings: {differ}")
        trie = EFGTrie()
        built: list[_Node] = []
        for entry in data["nodes"]:
            if entry["parent"] is None:
                node = trie.root
            else:
                parent = built[entry["parent"]]
                node = _Node(parent, entry["token"], parent.depth + 1)
                parent.children[entry["token"]] = (entry["slot"], node)
            node.c_hat = float(entry["c_hat"])
            if entry["dist"] is not None:
                ids, p, logp_raw = (np.asarray(x) for x in entry["dist"])
                ids = ids.astype(np.int64)
                node.dist = _Dist(ids, p.astype(np.float64), logp_raw.astype(np.float64), self._eos[ids])
                trie.expanded += 1
            built.append(node)
        state.trie = trie

    def distribution(self, prompt: str | Sequence[int], *, max_sequences: int = 100_000) -> dict[tuple[int, ...], float]:
        """The exact distribution of the next sample given the current bounds (finite languages
        only; model calls for prefixes the trie lacks are cached, the trie is not changed).
        Keys are token-id tuples without the EOS."""
        state = self._state(prompt)
        out: dict[tuple[int, ...], float] = {}

        def visit(prefix: tuple[int, ...], matcher: Matcher, node: _Node | None, prob: float) -> None:
            if node is not None and node.dist is not None:
                dist = node.dist
                weights = node.weights() if node.depth < self.depth_cap else dist.p
            else:
                dist = self._conditional(state, prefix, matcher, cache=True)
                weights = dist.p
            total = float(weights.sum())
            if total <= 0.0:
                return
            for i, t in enumerate(dist.ids.tolist()):
                if weights[i] <= 0.0:
                    continue
                share = prob * float(weights[i]) / total
                if dist.is_eos[i]:
                    out[prefix] = out.get(prefix, 0.0) + share
                    if len(out) > max_sequences:
                        raise GuideError(f"the language has more than {max_sequences} token sequences")
                    continue
                child = matcher.fork()
                if not child.advance(t):
                    raise GuideError(f"the constraint allowed token {t} and then refused it")
                entry = node.children.get(t) if node is not None else None
                visit(prefix + (t,), child, entry[1] if entry is not None else None, share)

        visit((), self.compiled.matcher(), state.trie.root, 1.0)
        total = sum(out.values())
        if total <= 0.0:
            raise EmptyLanguageError(f"{self.constraint!r} allows no sequence within {self.max_new_tokens} tokens")
        return {k: v / total for k, v in out.items()}

    def _sample_one(self, state: _PromptState) -> Sample:
        trie = state.trie
        for restarts in range(self.max_restarts + 1):
            if trie.root.c_hat <= 0.0:
                raise EmptyLanguageError(
                    f"{self.constraint!r} allows no sequence within {self.max_new_tokens} tokens for this prompt"
                )
            matcher = self.compiled.matcher()
            node: _Node | None = trie.root
            tokens: list[int] = []
            logp = logp_t = 0.0
            while True:
                prefix = tuple(tokens)
                if node is not None:
                    if node.dist is None:
                        hit = state.cache.get(prefix)  # filled by `enumerate`, if it ran
                        node.dist = hit if hit is not None else self._compute(state, prefix, matcher)
                        state.saved += hit is not None
                        trie.expanded += 1
                        trie.propagate(node)
                    else:
                        state.saved += 1
                    dist = node.dist
                    weights = node.weights() if node.depth < self.depth_cap else dist.p
                else:
                    dist = self._conditional(state, prefix, matcher, cache=False)
                    weights = dist.p
                if not len(dist.ids) or weights.sum() <= 0.0:
                    break  # dead end: node's bound is now 0 (propagated); restart
                i = self._draw(weights)
                t = int(dist.ids[i])
                logp += float(dist.logp_raw[i])
                logp_t += math.log(dist.p[i])
                if dist.is_eos[i]:
                    return self._finish(state, tokens, t, logp, logp_t, restarts, trie.root.c_hat, trie.expanded)
                if not matcher.advance(t):
                    raise GuideError(f"the constraint allowed token {t} and then refused it")
                if node is not None and node.depth < self.depth_cap:
                    entry = node.children.get(t)
                    if entry is None:
                        entry = node.children[t] = (i, _Node(node, t, node.depth + 1))
                    node = entry[1]
                else:
                    node = None
                tokens.append(t)
        raise GuideDeadEnd(
            f"ASAp restarted {self.max_restarts} times after dead ends; the constraint leaves almost no "
            f"sequence within {self.max_new_tokens} tokens (raise max_new_tokens or max_restarts)"
        )


class GCD(_Sampler):
    """Plain grammar-constrained sampling (mask, renormalise, sample) with the same interface as
    `ASAp`, for comparison. `cache=True` (default) memoises the model's conditional per prefix:
    the distribution is unchanged, only forward passes are saved. Dead ends restart the sample."""

    _name = "GCD"

    def __init__(self, model: Any, tokenizer: Any, constraint: Constraint, *, cache: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(model, tokenizer, constraint, **kwargs)
        self.cache = bool(cache)

    def _sample_one(self, state: _PromptState) -> Sample:
        for restarts in range(self.max_restarts + 1):
            matcher = self.compiled.matcher()
            tokens: list[int] = []
            logp = logp_t = 0.0
            while True:
                dist = self._conditional(state, tuple(tokens), matcher, cache=self.cache)
                if not len(dist.ids) or dist.total <= 0.0:
                    break
                i = self._draw(dist.p)
                t = int(dist.ids[i])
                logp += float(dist.logp_raw[i])
                logp_t += math.log(dist.p[i])
                if dist.is_eos[i]:
                    return self._finish(state, tokens, t, logp, logp_t, restarts, math.nan, len(state.cache))
                if not matcher.advance(t):
                    raise GuideError(f"the constraint allowed token {t} and then refused it")
                tokens.append(t)
        raise GuideDeadEnd(f"GCD restarted {self.max_restarts} times after dead ends")


def _logsumexp(x: np.ndarray) -> float:
    m = float(np.max(x))
    if not math.isfinite(m):
        raise GuideError("the model gave every token -inf (or +inf) logits")
    return m + math.log(float(np.exp(x - m).sum()))


def _logits_width(model: Any, tokenizer: Any) -> int:
    head = getattr(model, "get_output_embeddings", lambda: None)()
    weight = getattr(head, "weight", None)
    if weight is not None:
        return int(weight.shape[0])
    config = getattr(model, "config", None)
    width = getattr(config, "vocab_size", None)
    return int(width) if width else len(tokenizer)


def kl_divergence(p: dict, q: dict) -> float:
    """KL(p || q) in nats over dict-shaped distributions; inf when p has mass where q has none."""
    total = 0.0
    for k, pk in p.items():
        if pk <= 0.0:
            continue
        qk = q.get(k, 0.0)
        if qk <= 0.0:
            return math.inf
        total += pk * math.log(pk / qk)
    return total


__all__ = ["ASAp", "EFGTrie", "GCD", "Enumeration", "Sample", "SampleDiagnostics", "SamplerConfigError", "kl_divergence"]
