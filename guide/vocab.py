"""The exact bytes every token id contributes to the generated text.

Constraints are matched on bytes, not on token strings: a byte-level BPE token may be half of a
UTF-8 character, and a SentencePiece token spells its leading space as `▁`. This module reads the
tokenizer's decoder and turns every id into the bytes `tokenizer.decode` would produce for it, so
that joining token bytes reproduces the decoded text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import operator
import re
import weakref
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .cache import cache_dir, load_pickle, store_pickle
from .errors import TokenizerError

log = logging.getLogger(__name__)

# Bump when the build logic changes, so older disk-cache entries become stale.
_FORMAT = 1
_MEMORY_LIMIT = 16
_DISK_LIMIT = 256 << 20  # bytes of cached vocabularies kept on disk (oldest pruned first)
_MEMORY: dict[str, Vocabulary] = {}
# Per tokenizer object: skips serialising and hashing the tokenizer (~17 ms) on every generate call.
_BY_OBJECT: weakref.WeakKeyDictionary[Any, dict[tuple, Vocabulary]] = weakref.WeakKeyDictionary()


def _byte_level_tables() -> tuple[dict[int, int], re.Pattern[str]]:
    """GPT-2's bytes->unicode table inverted: a str.translate map, and a matcher for other chars."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    others = [b for b in range(256) if b not in printable]
    char_of = {b: b for b in printable} | {b: 256 + n for n, b in enumerate(others)}
    inverse = {char: byte for byte, char in char_of.items()}
    foreign = re.compile("[^" + re.escape("".join(map(chr, inverse))) + "]")
    return inverse, foreign


_BYTE_LEVEL_INVERSE, _NOT_BYTE_LEVEL = _byte_level_tables()
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _byte_level_bytes(piece: str) -> bytes:
    """Mirror the ByteLevel decoder: map every char back to its byte, or, when the piece holds a
    char outside the table (an added token like "<|x|> y"), keep the piece's own UTF-8."""
    if _NOT_BYTE_LEVEL.search(piece):
        return piece.encode("utf-8")
    return piece.translate(_BYTE_LEVEL_INVERSE).encode("latin-1")


@dataclass(frozen=True)
class _SentencePieceDecoder:
    """A supported SentencePiece-style decoder chain, reduced to what it does to a single token."""

    replacements: tuple[tuple[str, str], ...]
    byte_fallback: bool
    strip_leading_space: bool

    def token_bytes(self, piece: str) -> bytes:
        for pattern, content in self.replacements:
            piece = piece.replace(pattern, content)
        if self.byte_fallback:
            match = _BYTE_TOKEN.fullmatch(piece)
            if match:
                return bytes((int(match.group(1), 16),))
        return piece.encode("utf-8")


def _metaspace_strips(spec: dict[str, Any]) -> bool:
    """Whether Metaspace drops the `▁` it prepended (older JSON spells it add_prefix_space).

    tokenizers actually deletes every `▁` of the first token rather than one leading space of the
    text; the two differ only for a first token holding several `▁` ("▁▁": "" there, " " here) or
    a first <0x20> byte token (kept there, stripped here).
    """
    if "prepend_scheme" in spec:
        return spec["prepend_scheme"] != "never"
    return bool(spec.get("add_prefix_space", True))


def _sentencepiece_decoder(steps: list[dict[str, Any]]) -> _SentencePieceDecoder:
    """Accept [Replace|Metaspace]*, ByteFallback?, Fuse?, Strip(' ', 1, 0)? (Llama's chain and kin).

    Anything else would need whole-sequence semantics that per-token bytes cannot express, so it is
    refused rather than approximated.
    """
    replacements: list[tuple[str, str]] = []
    byte_fallback = fused = strip = False
    for step in steps:
        kind = step.get("type")
        if kind in ("Replace", "Metaspace") and (byte_fallback or fused):
            raise TokenizerError(f"unsupported decoder: {kind} after ByteFallback/Fuse")
        if kind == "Replace":
            pattern = step.get("pattern", {})
            if "String" not in pattern:
                raise TokenizerError(f"unsupported decoder: Replace with pattern {pattern!r}")
            replacements.append((pattern["String"], step["content"]))
        elif kind == "Metaspace":
            replacements.append((step["replacement"], " "))
            strip = strip or _metaspace_strips(step)
        elif kind == "ByteFallback" and not (byte_fallback or fused):
            byte_fallback = True
        elif kind == "Fuse" and not fused:
            fused = True
        elif kind == "Strip" and step.get("content") == " " and step.get("stop") == 0:
            start = step.get("start")
            if start == 0:
                continue
            if start != 1 or not fused or strip:
                raise TokenizerError(f"unsupported decoder: Strip(start={start}) in {steps!r}")
            strip = True
        else:
            raise TokenizerError(f"unsupported decoder step {kind!r} in {steps!r}")
    return _SentencePieceDecoder(tuple(replacements), byte_fallback, strip)


def _token_bytes_function(
    decoder: dict[str, Any] | None, model_type: str
) -> tuple[Callable[[str], bytes], bool]:
    """(piece -> bytes, strip_leading_space), or a TokenizerError naming what is unsupported."""
    if decoder is None:
        raise TokenizerError(
            "tokenizer has no decoder; guide cannot tell which bytes its tokens produce"
        )
    kind = decoder.get("type")
    steps = decoder.get("decoders", []) if kind == "Sequence" else [decoder]
    if len(steps) == 1 and steps[0].get("type") == "ByteLevel":
        if model_type != "BPE":
            raise TokenizerError(f"unsupported model type {model_type!r} with a ByteLevel decoder")
        return _byte_level_bytes, False
    if kind not in ("Sequence", "Metaspace"):
        raise TokenizerError(f"unsupported decoder type {kind!r}")
    if model_type not in ("BPE", "Unigram"):
        raise TokenizerError(f"unsupported model type {model_type!r} with a {kind} decoder")
    sp = _sentencepiece_decoder(steps)
    return sp.token_bytes, sp.strip_leading_space


def _check_width(size: int, model_width: int) -> None:
    if model_width < size:
        raise TokenizerError(
            f"tokenizer/model width mismatch: the tokenizer has {size} tokens "
            f"but the model's logits are only {model_width} wide"
        )


def _merged_eos(tok: Any, eos_token_id: int | Sequence[int] | None) -> frozenset[int]:
    """The tokenizer's EOS plus the caller's (generation_config may list several, e.g. [2, 0])."""
    ids: set[int] = set()
    own = getattr(tok, "eos_token_id", None)
    if own is not None:
        ids.add(operator.index(own))
    if eos_token_id is not None:
        extra = [eos_token_id] if isinstance(eos_token_id, int) else eos_token_id
        ids.update(operator.index(i) for i in extra)
    if not ids:
        raise TokenizerError("the tokenizer has no EOS token; pass eos_token_id=")
    return frozenset(ids)


def clear_memory_cache() -> None:
    """Forget in-process vocabularies (the disk cache stays)."""
    _MEMORY.clear()
    _BY_OBJECT.clear()


def _remember(key: str, vocab: Vocabulary) -> None:
    if len(_MEMORY) >= _MEMORY_LIMIT:
        _MEMORY.pop(next(iter(_MEMORY)))
    _MEMORY[key] = vocab


def _remember_object(tok: Any, object_key: tuple, vocab: Vocabulary) -> None:
    try:
        _BY_OBJECT.setdefault(tok, {})[object_key] = vocab
    except TypeError:
        pass


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Token id -> bytes, plus the ids a grammar must treat specially.

    Ids the tokenizer leaves unassigned decode to b"" and are listed in `special_ids`, so no
    grammar ever allows them.
    """

    tokens: tuple[bytes, ...] = field(repr=False)
    eos_ids: frozenset[int]
    special_ids: frozenset[int] = field(repr=False)
    model_width: int
    strip_leading_space: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.tokens, tuple) or not all(type(t) is bytes for t in self.tokens):
            raise TypeError("Vocabulary.tokens must be a tuple of bytes")
        _check_width(len(self.tokens), self.model_width)
        if not self.eos_ids:
            raise TokenizerError("a vocabulary needs at least one EOS id")
        if not self.eos_ids <= self.special_ids:
            raise TokenizerError(
                f"EOS ids {sorted(self.eos_ids - self.special_ids)} missing from special_ids"
            )
        out_of_range = sorted(i for i in self.special_ids if not 0 <= i < len(self.tokens))
        if out_of_range:
            raise TokenizerError(
                f"special/EOS ids {out_of_range} outside the {len(self.tokens)}-token vocabulary"
            )

    @property
    def size(self) -> int:
        return len(self.tokens)

    @cached_property
    def fingerprint(self) -> str:
        """Identifies the vocabulary in cache keys of everything compiled against it."""
        h = hashlib.sha256(f"guide.vocab/{_FORMAT}".encode())
        h.update(array("Q", [len(t) for t in self.tokens]).tobytes())
        h.update(b"".join(self.tokens))
        ids = (sorted(self.eos_ids), sorted(self.special_ids), self.model_width)
        h.update(repr((*ids, self.strip_leading_space)).encode())
        return h.hexdigest()

    def decode(self, ids: Iterable[int]) -> bytes:
        """What `tokenizer.decode(ids, skip_special_tokens=False)` spells, before UTF-8 repair."""
        tokens = self.tokens
        index = [operator.index(i) for i in ids]
        if index and not (0 <= min(index) and max(index) < len(tokens)):
            raise IndexError(f"token id outside the {len(tokens)}-token vocabulary in {index!r}")
        out = b"".join([tokens[i] for i in index])
        if self.strip_leading_space and out.startswith(b" "):
            return out[1:]
        return out

    def decode_text(self, ids: Iterable[int]) -> str:
        """`decode` as text; a cut-off UTF-8 sequence (a length limit hit mid-character) shows as U+FFFD."""
        return self.decode(ids).decode("utf-8", errors="replace")

    @classmethod
    def from_bytes(
        cls,
        tokens: Sequence[bytes],
        *,
        eos_ids: Iterable[int],
        special_ids: Iterable[int] = (),
        model_width: int | None = None,
        strip_leading_space: bool = False,
    ) -> Vocabulary:
        """A hand-written vocabulary (tests, toy grammars); EOS ids count as special."""
        eos = frozenset(operator.index(i) for i in eos_ids)
        return cls(
            tokens=tuple(bytes(t) for t in tokens),
            eos_ids=eos,
            special_ids=eos | {operator.index(i) for i in special_ids},
            model_width=len(tokens) if model_width is None else operator.index(model_width),
            strip_leading_space=strip_leading_space,
        )

    @classmethod
    def from_tokenizer(
        cls,
        tok: Any,
        model_width: int | None = None,
        *,
        eos_token_id: int | Sequence[int] | None = None,
        cache: bool = True,
    ) -> Vocabulary:
        """Build (or fetch from the memory/disk cache) the vocabulary of a fast HF tokenizer.

        `eos_token_id` adds to the tokenizer's own EOS (chat models stop on several ids);
        `model_width` is the logits width, which may exceed the tokenizer (padded embeddings).
        """
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is None:
            raise TokenizerError(
                f"{type(tok).__name__} has no fast `tokenizers` backend; load it with use_fast=True"
            )
        size = len(tok)
        width = size if model_width is None else operator.index(model_width)
        _check_width(size, width)
        eos = _merged_eos(tok, eos_token_id)
        declared_special = frozenset(getattr(tok, "all_special_ids", ()) or ())
        object_key = (size, width, eos, declared_special)
        if cache:
            try:
                hit = _BY_OBJECT.get(tok, {}).get(object_key)
            except TypeError:  # an object that takes no weak references
                hit = None
            if hit is not None:
                return hit
        # The serialized tokenizer covers vocab, added tokens and decoder (hashing it takes ~20 ms).
        key_source = repr((_FORMAT, size, width, sorted(eos), sorted(declared_special))).encode()
        key = hashlib.sha256(key_source + backend.to_str().encode()).hexdigest()
        path = cache_dir() / "vocab" / f"{key}.pkl"
        if cache:
            hit = _MEMORY.get(key) or cls._load(path, key)
            if hit is not None:
                _remember(key, hit)
                _remember_object(tok, object_key, hit)
                return hit
        vocab = cls._build(backend, size, width, eos, declared_special)
        if cache:
            _remember(key, vocab)
            _remember_object(tok, object_key, vocab)
            payload = (
                _FORMAT,
                key,
                vocab.tokens,
                vocab.eos_ids,
                vocab.special_ids,
                vocab.model_width,
                vocab.strip_leading_space,
            )
            try:
                store_pickle(path, payload, max_folder_bytes=_DISK_LIMIT)
            except OSError as exc:
                log.warning("could not write the vocabulary cache %s: %s", path, exc)
        return vocab

    @classmethod
    def _load(cls, path: Path, key: str) -> Vocabulary | None:
        """The cached vocabulary, or None for a missing, corrupt or stale file (it is rebuilt)."""
        try:
            payload = load_pickle(path)
        except Exception:  # garbage bytes can make pickle raise nearly anything
            return None
        if not (isinstance(payload, tuple) and len(payload) == 7 and payload[:2] == (_FORMAT, key)):
            return None
        try:
            return cls(*payload[2:])
        except (TypeError, ValueError):
            return None

    @classmethod
    def _build(
        cls,
        backend: Any,
        size: int,
        width: int,
        eos: frozenset[int],
        declared_special: frozenset[int],
    ) -> Vocabulary:
        # The decoder's own JSON: parsing the whole to_str() (merges included) would cost ~180 ms.
        state = backend.decoder.__getstate__() if backend.decoder is not None else None
        decoder = None if state is None else json.loads(state)
        token_bytes, strip = _token_bytes_function(decoder, type(backend.model).__name__)
        pieces = [backend.id_to_token(i) for i in range(size)]
        # Added tokens pass through the decoder too (tokenizers decodes them like any piece).
        tokens = tuple(b"" if p is None else token_bytes(p) for p in pieces)
        holes = {i for i, p in enumerate(pieces) if p is None}
        added_special = {i for i, t in backend.get_added_tokens_decoder().items() if t.special}
        special = frozenset(added_special | declared_special | eos | holes)
        return cls(tokens, eos, special, width, strip)


__all__ = ["Vocabulary", "clear_memory_cache"]
