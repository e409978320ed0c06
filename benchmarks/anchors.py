"""Anchor libraries behind one shape, so every benchmark times them exactly like guide.

Each anchor is used through its own recommended API:

- xgrammar:     TokenizerInfo.from_huggingface -> GrammarCompiler.compile_regex -> GrammarMatcher
                (fill_next_token_bitmask / accept_token)
- llguidance:   llguidance.hf.from_tokenizer -> LLMatcher(tok, LLMatcher.grammar_from_regex(...))
                (llguidance.numpy.fill_next_token_bitmask / consume_token)
- outlines-core: Vocabulary(eos_id, {token bytes: [ids]}) -> Index(regex, vocab) -> Guide
                (write_mask_into / advance)

The shape mirrors guide's own Compiled/Matcher split:

    engine = Xgrammar(tok, width)            # tokenizer preprocessing (engine.tokenizer_s)
    compiled = engine.compile_regex(pattern) # compile; time it from the caller
    m = compiled.matcher()                   # per-sequence state
    m.fill(bitmask, row); m.advance(token_id) -> bool; m.is_accepting()

Every import is guarded: `available_anchors()` lists each library with either its class or the
reason it cannot be used ("not installed"), so a runner can print that instead of failing.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


def bitmask_words(width: int) -> int:
    return (width + 31) // 32


def allocate(width: int, rows: int = 1) -> np.ndarray:
    """The packed int32 bitmask every engine here fills (bit i of word i//32 = token i allowed)."""
    return np.zeros((rows, bitmask_words(width)), dtype=np.int32)


def allowed_ids(row: np.ndarray, width: int) -> np.ndarray:
    """Token ids whose bit is set in one bitmask row."""
    bits = np.unpackbits(np.ascontiguousarray(row).view(np.uint8), bitorder="little")
    return np.flatnonzero(bits[:width])


def bit_is_set(row: np.ndarray, token_id: int) -> bool:
    return bool((int(row[token_id >> 5]) >> (token_id & 31)) & 1)


def version_of(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# ---------------------------------------------------------------------------------------------
# The common shape


class AnchorMatcher:
    def fill(self, bitmask: np.ndarray, row: int = 0) -> None:
        raise NotImplementedError

    def advance(self, token_id: int) -> bool:
        raise NotImplementedError

    def is_accepting(self) -> bool:
        raise NotImplementedError


class AnchorCompiled:
    def matcher(self, *, strict: bool = False) -> AnchorMatcher:
        """A fresh per-sequence matcher. `strict=True` turns off any adapter workaround."""
        raise NotImplementedError

    def settle(self) -> None:
        """Wait for work the engine goes on with after compile returns (guide's background walks)."""


class Anchor:
    """Tokenizer preprocessing happens in __init__ and is recorded in `tokenizer_s`."""

    name = "?"
    dist = "?"
    tokenizer_s: float = float("nan")

    def __init__(self, tok: Any, width: int) -> None:
        self.tok = tok
        self.width = width
        start = time.perf_counter()
        self._prepare()
        self.tokenizer_s = time.perf_counter() - start

    @property
    def version(self) -> str:
        return version_of(self.dist)

    def _prepare(self) -> None:
        raise NotImplementedError

    def compile_regex(self, pattern: str) -> AnchorCompiled:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# xgrammar


class _XgrMatcher(AnchorMatcher):
    def __init__(self, xgr: Any, compiled: Any) -> None:
        self._m = xgr.GrammarMatcher(compiled)

    def fill(self, bitmask: np.ndarray, row: int = 0) -> None:
        # numpy arrays speak DLPack, which fill_next_token_bitmask accepts directly (CPU, int32).
        self._m.fill_next_token_bitmask(bitmask, row)

    def advance(self, token_id: int) -> bool:
        return self._m.accept_token(token_id)

    def is_accepting(self) -> bool:
        return self._m.is_completed() or self._m.is_terminated()


class _XgrCompiled(AnchorCompiled):
    def __init__(self, xgr: Any, compiled: Any) -> None:
        self._xgr = xgr
        self._compiled = compiled

    def matcher(self, *, strict: bool = False) -> AnchorMatcher:
        return _XgrMatcher(self._xgr, self._compiled)


class Xgrammar(Anchor):
    name = "xgrammar"
    dist = "xgrammar"

    def _prepare(self) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self._info = xgr.TokenizerInfo.from_huggingface(self.tok, vocab_size=self.width)

    def compile_regex(self, pattern: str) -> AnchorCompiled:
        # A fresh compiler with its cache off, so every call is a cold compile.
        compiler = self._xgr.GrammarCompiler(self._info, cache_enabled=False)
        return _XgrCompiled(self._xgr, compiler.compile_regex(pattern))


# ---------------------------------------------------------------------------------------------
# llguidance


class _LlgMatcher(AnchorMatcher):
    def __init__(self, fill: Callable[..., None], matcher: Any) -> None:
        self._fill = fill
        self._m = matcher

    def fill(self, bitmask: np.ndarray, row: int = 0) -> None:
        self._fill(self._m, bitmask, row)

    def advance(self, token_id: int) -> bool:
        return self._m.consume_token(token_id)

    def is_accepting(self) -> bool:
        return self._m.is_accepting()


class _LlgCompiled(AnchorCompiled):
    def __init__(self, fill: Callable[..., None], matcher: Any) -> None:
        if matcher.is_error():
            raise ValueError(f"llguidance rejected the grammar: {matcher.get_error()}")
        self._fill = fill
        self._template = matcher

    def matcher(self, *, strict: bool = False) -> AnchorMatcher:
        return _LlgMatcher(self._fill, self._template.deep_copy())


class Llguidance(Anchor):
    name = "llguidance"
    dist = "llguidance"

    def _prepare(self) -> None:
        import llguidance
        import llguidance.hf
        import llguidance.numpy

        self._llg = llguidance
        self._fill = llguidance.numpy.fill_next_token_bitmask
        self._lltok = llguidance.hf.from_tokenizer(self.tok, n_vocab=self.width)

    def compile_regex(self, pattern: str) -> AnchorCompiled:
        M = self._llg.LLMatcher
        return _LlgCompiled(self._fill, M(self._lltok, M.grammar_from_regex(pattern), log_level=0))


# ---------------------------------------------------------------------------------------------
# outlines-core


def _gpt2_unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: the char a ByteLevel BPE piece uses for each byte."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def token_bytes_map(tok: Any) -> dict[int, bytes]:
    """id -> the bytes the token contributes to decoded text, for the plain (non-added) vocabulary.

    outlines-core matches the regex against the raw bytes of each key (a `str` key is taken as its
    UTF-8), so keys must be the decoded bytes ("Ġ2" -> b" 2"), not the tokenizer's piece strings.
    This mirrors outlines-core's own `Vocabulary.from_pretrained` (which needs the Hub): ByteLevel
    pieces map back through the GPT-2 table; SentencePiece pieces turn "▁" into a space and
    "<0xAB>" byte-fallback pieces into that byte.
    """
    backend = tok.backend_tokenizer
    decoder = json.loads(backend.decoder.__getstate__()) if backend.decoder is not None else {}
    steps = decoder.get("decoders", [decoder]) if decoder.get("type") == "Sequence" else [decoder]
    kinds = {s.get("type") for s in steps}
    pieces = backend.get_vocab(with_added_tokens=False)
    out: dict[int, bytes] = {}
    if "ByteLevel" in kinds:
        table = _gpt2_unicode_to_byte()
        for piece, i in pieces.items():
            try:
                out[i] = bytes(table[c] for c in piece)
            except KeyError:
                out[i] = piece.encode("utf-8")
    else:
        for piece, i in pieces.items():
            if (
                "ByteFallback" in kinds
                and len(piece) == 6
                and piece.startswith("<0x")
                and piece.endswith(">")
            ):
                out[i] = bytes([int(piece[3:5], 16)])
            else:
                out[i] = piece.replace("\u2581", " ").encode("utf-8")
    return out


class _OutlinesMatcher(AnchorMatcher):
    """outlines-core 0.2.14 puts EOS in the mask of a final state, but `Guide.advance(eos)` then
    raises "No next state found" (its Index has no EOS transition; outlines itself just stops the
    sequence at EOS). With `strict=False` an EOS in a final state is accepted without calling
    `advance`, as outlines does; `strict=True` reports the library's own behaviour."""

    def __init__(self, guide: Any, words: int, eos: int, strict: bool) -> None:
        self._g = guide
        self._words = words
        self._eos = eos
        self._strict = strict
        self.last_error: str | None = None

    def fill(self, bitmask: np.ndarray, row: int = 0) -> None:
        self._g.write_mask_into(bitmask[row].ctypes.data, self._words, 4)

    def advance(self, token_id: int) -> bool:
        if token_id == self._eos and not self._strict and self._g.is_finished():
            return True
        try:
            self._g.advance(token_id, return_tokens=False)
        except ValueError as exc:
            self.last_error = str(exc)
            return False
        return True

    def is_accepting(self) -> bool:
        return self._g.is_finished()


class _OutlinesCompiled(AnchorCompiled):
    def __init__(self, oc: Any, index: Any, words: int, eos: int) -> None:
        self._oc = oc
        self._index = index
        self._words = words
        self._eos = eos

    def matcher(self, *, strict: bool = False) -> AnchorMatcher:
        return _OutlinesMatcher(self._oc.Guide(self._index), self._words, self._eos, strict)


class OutlinesCore(Anchor):
    name = "outlines-core"
    dist = "outlines_core"

    def _prepare(self) -> None:
        import outlines_core

        self._oc = outlines_core
        eos = self.tok.eos_token_id
        skip = {eos, *(getattr(self.tok, "all_special_ids", ()) or ())}
        by_bytes: dict[bytes, list[int]] = {}
        for i, b in token_bytes_map(self.tok).items():
            if i not in skip and b:
                by_bytes.setdefault(b, []).append(i)
        self._vocab = outlines_core.Vocabulary(eos, by_bytes)

    def compile_regex(self, pattern: str) -> AnchorCompiled:
        index = self._oc.Index(pattern, self._vocab)
        return _OutlinesCompiled(self._oc, index, bitmask_words(self.width), self.tok.eos_token_id)


# ---------------------------------------------------------------------------------------------


ANCHORS: tuple[type[Anchor], ...] = (Xgrammar, Llguidance, OutlinesCore)
_MODULES = {"xgrammar": "xgrammar", "llguidance": "llguidance", "outlines-core": "outlines_core"}


@dataclass
class AnchorStatus:
    name: str
    cls: type[Anchor] | None
    version: str
    problem: str | None  # None when usable, else e.g. "not installed"


def available_anchors() -> list[AnchorStatus]:
    """Every anchor with its class, or why it is unavailable (an import is never fatal)."""
    result = []
    for cls in ANCHORS:
        try:
            importlib.import_module(_MODULES[cls.name])
        except ImportError as exc:
            missing = isinstance(exc, ModuleNotFoundError) and exc.name == _MODULES[cls.name]
            result.append(
                AnchorStatus(
                    cls.name, None, "-", "not installed" if missing else f"import failed: {exc}"
                )
            )
            continue
        result.append(AnchorStatus(cls.name, cls, version_of(cls.dist), None))
    return result


@dataclass
class WalkCheck:
    """Result of walking a reference tokenization (plus EOS) through a matcher."""

    ok: bool
    message: str
    masks: list[np.ndarray]  # allowed ids before each step, for cross-engine comparison


def check_walk(matcher: Any, tokens: list[int], width: int, *, fill: str = "fill") -> WalkCheck:
    """Each token must be in the mask and be accepted; the text must be accepting before EOS.

    `tokens` ends with EOS. Works for guide matchers too (`fill="fill_bitmask"`).
    """
    do_fill = getattr(matcher, fill)
    bitmask = allocate(width)
    masks = []
    for step, t in enumerate(tokens):
        bitmask[:] = 0
        do_fill(bitmask, 0)
        masks.append(allowed_ids(bitmask[0], width))
        if step == len(tokens) - 1 and not matcher.is_accepting():
            return WalkCheck(False, f"not accepting before EOS (step {step})", masks)
        if not bit_is_set(bitmask[0], t):
            return WalkCheck(False, f"token {t} (step {step}) missing from the mask", masks)
        if not matcher.advance(t):
            why = getattr(matcher, "last_error", None)
            what = "EOS" if step == len(tokens) - 1 else "token"
            return WalkCheck(
                False,
                f"{what} {t} (step {step}) is in the mask but rejected by advance"
                + (f" ({why})" if why else ""),
                masks,
            )
    return WalkCheck(True, "ok", masks)


class GuideMatcher(AnchorMatcher):
    """guide's own matcher in the anchors' shape, so every engine is timed through one harness."""

    def __init__(self, m: Any) -> None:
        self._m = m
        self.fill = m.fill_bitmask  # bound methods: no extra Python frame per call
        self.advance = m.advance

    def is_accepting(self) -> bool:
        return self._m.is_accepting()


class GuideCompiled(AnchorCompiled):
    def __init__(self, compiled: Any) -> None:
        self._c = compiled

    def settle(self) -> None:
        wait = getattr(self._c, "wait_precomputed", None)  # grammars; a regex has nothing pending
        if wait is not None:
            wait()

    def matcher(self, *, strict: bool = False) -> AnchorMatcher:
        return GuideMatcher(self._c.matcher())
