"""Plumbing shared by the two-model samplers (contrastive decoding, model switching).

- `truncated_amateur(model, k)`: a cheap "amateur"/"small" model made from the *same weights* as
  `model`, keeping only its first `k` decoder layers plus the final norm and the LM head. Nothing
  is copied or trained: the modules are shared with `model` and built in memory. It is a stand-in
  for a genuinely smaller model of the same family (tests and demos use it because only one model
  is embedded); a real pair (e.g. SmolLM2-360M / -135M) goes through the same API.
- `check_same_tokenizer(a, b)`: two models may only be combined when their tokenizers agree.
- `shared_width(...)`: logits of two models of one family can differ in width (padding rows);
  both are sliced to the shared vocabulary before they are combined.
- `KVModel`: one model with its own KV cache that consumes tokens in chunks (catch-up) and can be
  cropped back (speculative rejection). Works with any HF causal LM (DynamicCache) and with the toy
  LMs of the tests.
- `TorchRandom`: the two random primitives the samplers use (categorical draw, coin flip), so tests
  can substitute an enumerating source and compute output distributions exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import TokenizerError

if TYPE_CHECKING:
    import torch


def truncated_amateur(model: Any, k: int) -> Any:
    """The first `k` decoder layers of `model`, plus its embeddings, final norm and LM head.

    The returned model shares every parameter with `model` (no copy, no extra memory beyond the
    module objects) and has `config.num_hidden_layers == k`. It is a weaker model of the same
    tokenizer, which is what CD's amateur and EAD's small model need; it is *not* a distilled or
    separately trained model, and results with it say so.

    Supports Llama-style models (`model.model.layers`, `.norm`, `.embed_tokens`, `.rotary_emb`),
    which covers Llama, SmolLM2, Qwen2, Mistral and most decoder-only HF models.
    """
    import torch

    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None or not hasattr(inner, "norm") or not hasattr(model, "lm_head"):
        raise TypeError(
            f"truncated_amateur needs a Llama-style model (model.model.layers, .norm, lm_head), "
            f"got {type(model).__name__}"
        )
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(layers):
        raise ValueError(f"k must be an int in [1, {len(layers)}], got {k!r}")
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = k
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = list(config.layer_types)[:k]
    with torch.device("meta"):
        small = type(model)(config)
    small.model.embed_tokens = inner.embed_tokens
    small.model.layers = torch.nn.ModuleList(list(layers)[:k])
    small.model.norm = inner.norm
    if hasattr(inner, "rotary_emb"):
        small.model.rotary_emb = inner.rotary_emb
    small.lm_head = model.lm_head
    small.generation_config = copy.deepcopy(model.generation_config)
    left = [
        name
        for name, t in list(small.named_parameters()) + list(small.named_buffers())
        if t.is_meta
    ]
    if left:
        raise TypeError(
            f"truncated_amateur could not share these tensors of {type(model).__name__}: {left}"
        )
    return small.eval()


def check_same_tokenizer(a: Any, b: Any) -> None:
    """Raise `TokenizerError` unless tokenizers `a` and `b` map every token string to the same id."""
    if a is b:
        return
    va, vb = a.get_vocab(), b.get_vocab()
    if va == vb:
        return
    only_a = sorted(set(va) - set(vb))[:3]
    only_b = sorted(set(vb) - set(va))[:3]
    moved = sorted(t for t in set(va) & set(vb) if va[t] != vb[t])[:3]
    raise TokenizerError(
        "the two models need one tokenizer, but theirs differ "
        f"({len(va)} vs {len(vb)} tokens; only in the first: {only_a}, only in the second: {only_b}, "
        f"different ids: {moved}); pick a pair from one model family"
    )


def shared_width(*widths: int | None) -> int:
    """The width both distributions are sliced to: the smallest of the given widths."""
    known = [int(w) for w in widths if w is not None]
    if not known:
        raise ValueError("no logits width given")
    return min(known)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids [B, T] and attention mask [B, T] for a batch of token lists."""
    import torch

    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("every prompt needs at least one token")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(list(r), dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids, mask


class KVModel:
    """A causal LM with its own KV cache over a (left-padded) batch.

    `feed(tokens)` consumes a chunk of tokens for every row in one forward pass and returns the
    float32 logits at each of them ([B, k, V]); `crop(n)` forgets everything after the first `n`
    positions. Position ids come from the attention mask, so left padding is handled.
    `calls` counts forward passes and `tokens_fed` the positions computed (for cost accounting).
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.cache: Any = None
        self.mask: torch.Tensor | None = None
        self.calls = 0
        self.tokens_fed = 0
        import inspect

        try:
            params = inspect.signature(getattr(model, "forward", model)).parameters
        except (TypeError, ValueError):
            params = {}
        # transformers >= 5.2x names the cache argument `cache` (and `crop` takes minus the count
        # to remove); older versions and the toy LMs use `past_key_values` and crop(max_length).
        self._new_api = "cache" in params and "past_key_values" not in params

    @property
    def length(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[1])

    def feed(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        import torch

        if tokens.dim() != 2 or tokens.shape[1] == 0:
            raise ValueError(f"feed takes token ids [B, k] with k >= 1, got {tuple(tokens.shape)}")
        new_mask = torch.ones_like(tokens) if mask is None else mask.to(torch.long)
        full = new_mask if self.mask is None else torch.cat([self.mask, new_mask], dim=1)
        positions = (full.cumsum(-1) - 1).clamp(min=0)[:, -tokens.shape[1] :]
        with torch.inference_mode():
            cache_arg = {"cache" if self._new_api else "past_key_values": self.cache}
            out = self.model(
                input_ids=tokens,
                attention_mask=full,
                position_ids=positions,
                use_cache=True,
                **cache_arg,
            )
        cache = getattr(out, "cache", None)
        self.cache = cache if cache is not None else out.past_key_values
        self.mask = full
        self.calls += 1
        self.tokens_fed += int(tokens.shape[0] * tokens.shape[1])
        return out.logits.float()

    def crop(self, n: int) -> None:
        """Keep the first `n` positions of the cache (rejecting speculative tokens)."""
        if n > self.length:
            raise ValueError(f"cannot crop a {self.length}-position cache to {n}")
        if n == self.length:
            return
        self.cache.crop(n - self.length if self._new_api else n)
        assert self.mask is not None
        self.mask = self.mask[:, :n]


class TorchRandom:
    """The random source of the samplers: categorical draws and coin flips from a torch Generator."""

    def __init__(self, seed: int | None = None) -> None:
        import torch

        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

    def choice(self, probs: torch.Tensor) -> int:
        import torch

        return int(torch.multinomial(probs.double(), 1, generator=self.generator))

    def bernoulli(self, p: float) -> bool:
        import torch

        if p >= 1.0:
            return True
        return bool(torch.rand((), generator=self.generator, dtype=torch.float64) < p)


def allowed_mask(
    matchers: Sequence[Any], width: int, vocab_size: int | None = None
) -> torch.Tensor:
    """bool [len(matchers), width]: the tokens each matcher allows (None: every id below `vocab_size`).

    Ids at or past the tokenizer's size (`vocab_size`, or the matcher's vocabulary) are never allowed.
    """
    import numpy as np
    import torch

    from ..bitmask import bitmask_width, unpack_bool

    out = torch.zeros((len(matchers), width), dtype=torch.bool)
    for i, m in enumerate(matchers):
        if m is None:
            out[i, : width if vocab_size is None else min(width, vocab_size)] = True
            continue
        words = np.zeros((1, bitmask_width(m.vocab.model_width)), dtype=np.int32)
        m.fill_bitmask(words, 0)
        limit = min(width, m.vocab.size, m.vocab.model_width)
        out[i, :limit] = torch.from_numpy(unpack_bool(words[0], m.vocab.model_width)[:limit].copy())
    return out


class _TableCache:
    """The toy LM's "KV cache": the tokens (and attention bits) each row has consumed."""

    def __init__(self, rows: int) -> None:
        self.rows: list[list[tuple[int, int]]] = [[] for _ in range(rows)]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return len(self.rows[0]) if self.rows else 0

    def crop(self, n: int) -> None:
        self.rows = [r[:n] for r in self.rows]


class TableLM:
    """An exact toy causal LM: next-token logits = `table(prefix)`, prefix = the non-padding tokens.

    It has the call signature of a transformers causal LM (`input_ids`, `attention_mask`,
    `past_key_values`, `use_cache`; returns an object with `.logits` [B, k, width] and
    `.past_key_values`), a `config.vocab_size`, and a croppable cache, so every sampler runs on it
    unchanged and target distributions can be computed by enumeration. `calls` counts forwards.
    """

    def __init__(self, table: Any, width: int) -> None:
        from types import SimpleNamespace

        self.table = table
        self.config = SimpleNamespace(vocab_size=width)
        self.calls = 0

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool = True,
        **_: Any,
    ) -> Any:
        from types import SimpleNamespace

        import torch

        self.calls += 1
        rows, k = input_ids.shape
        cache = past_key_values if past_key_values is not None else _TableCache(rows)
        bits = attention_mask[:, -k:].tolist() if attention_mask is not None else [[1] * k] * rows
        logits = torch.empty((rows, k, self.config.vocab_size), dtype=torch.float32)
        for b in range(rows):
            for j, t in enumerate(input_ids[b].tolist()):
                cache.rows[b].append((t, bits[b][j]))
                prefix = tuple(x for x, m in cache.rows[b] if m)
                logits[b, j] = torch.as_tensor(self.table(prefix), dtype=torch.float32)
        return SimpleNamespace(logits=logits, past_key_values=cache)


def hashed_table(width: int, seed: int, scale: float = 2.0) -> Any:
    """A deterministic table: standard-normal logits * `scale`, seeded by (seed, prefix)."""
    import random

    def table(prefix: tuple[int, ...]) -> list[float]:
        r = random.Random(hash((seed, prefix)))
        return [scale * r.gauss(0.0, 1.0) for _ in range(width)]

    return table


__all__ = [
    "KVModel",
    "TableLM",
    "TorchRandom",
    "allowed_mask",
    "check_same_tokenizer",
    "hashed_table",
    "left_pad",
    "shared_width",
    "truncated_amateur",
]
