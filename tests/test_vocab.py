"""Vocabulary must reproduce tokenizer.decode byte for byte: grammars match on these bytes."""

from __future__ import annotations

import json
import random
import sys
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from guide.cache import cache_dir
from guide.errors import TokenizerError
from guide.vocab import Vocabulary, clear_memory_cache

CORPUS = [
    "The café on the corner serves crème brûlée and naïve piñatas.",
    "Déjà vu: élève, été, écrire, où, garçon, Noël.",
    "中文字符和汉字：我们今天去北京吃烤鸭。中文很有意思。",
    "Emoji time 🙂🙂 😀 🚀🚀 👍 and more 🙂 text.",
    'def f(x):\n    return {"key": [1, 2, 3], "value": x * 2}\n',
    "Hello world! hello again, world. Numbers: 12345 67890.",
    'JSON: {"name": "Zoë", "city": "São Paulo", "ok": true}',
] * 4

REAL_STRINGS = [
    "hello world",
    "Crème brûlée, s'il vous plaît.",
    "中文 and English mixed: 北京欢迎你",
    "rocket 🚀 and thumbs 👍🏽 (skin tone) and ZWJ 👩‍💻",
    '{"a": [1, 2.5, null], "b": "tab\\t"}\n\n  indented\tline',
    "Ωμέγα Ω and rare ǅ ẞ ₿ ✓",
    "trailing spaces   ",
]

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
PROPERTY = settings(max_examples=150, deadline=None)


def _wrap(backend: Tokenizer, **special: str) -> Any:
    return PreTrainedTokenizerFast(tokenizer_object=backend, **special)


def _hf_decode(tok: Any, ids: list[int]) -> str:
    return tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _byte_level_backend() -> Tokenizer:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS, trainer)
    # Added tokens go through the ByteLevel decoder too: "ĠX" spells " X"; a piece with a char
    # outside the byte table (the space) is kept verbatim, so its "é" stays UTF-8, not byte 0xE9.
    backend.add_tokens([AddedToken("ĠX", special=False), AddedToken("<tool café>", special=False)])
    # <|sep|> is special only in the backend; transformers' all_special_ids does not list it.
    backend.add_special_tokens(
        [AddedToken("<|eos|>", special=True), AddedToken("<|sep|>", special=True)]
    )
    return backend


def _sentencepiece_backend(decoder: Any) -> Tokenizer:
    """Llama-like: <unk> <s> </s>, then <0x00>..<0xFF> in the model vocab, then learned pieces."""
    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    # A small alphabet leaves rare characters (most emoji, some CJK) to byte fallback.
    trainer = trainers.BpeTrainer(vocab_size=300, limit_alphabet=70, show_progress=False)
    trainer_tok.train_from_iterator(CORPUS, trainer)
    learned = json.loads(trainer_tok.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"<0x{b:02X}>": 3 + b for b in range(256)}
    for piece in sorted(learned["vocab"], key=learned["vocab"].get):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    model = models.BPE(
        vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True
    )
    backend = Tokenizer(model)
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    backend.decoder = decoder
    backend.add_special_tokens([AddedToken(t, special=True) for t in ("<unk>", "<s>", "</s>")])
    return backend


LLAMA_DECODER = decoders.Sequence(
    [
        decoders.Replace("▁", " "),
        decoders.ByteFallback(),
        decoders.Fuse(),
        decoders.Strip(" ", 1, 0),
    ]
)


@pytest.fixture(scope="module")
def byte_level_tok() -> Any:
    return _wrap(_byte_level_backend(), eos_token="<|eos|>")


@pytest.fixture(scope="module")
def byte_level_vocab(byte_level_tok: Any) -> Vocabulary:
    return Vocabulary.from_tokenizer(byte_level_tok, cache=False)


@pytest.fixture(scope="module")
def sp_tok() -> Any:
    return _wrap(
        _sentencepiece_backend(LLAMA_DECODER), bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


@pytest.fixture(scope="module")
def sp_vocab(sp_tok: Any) -> Vocabulary:
    return Vocabulary.from_tokenizer(sp_tok, cache=False)


@pytest.fixture
def tmp_cache(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A private GUIDE_CACHE_DIR and an empty memory cache: never the user's cache."""
    monkeypatch.setenv("GUIDE_CACHE_DIR", str(tmp_path / "cache"))
    clear_memory_cache()
    yield cache_dir() / "vocab"
    clear_memory_cache()


# --- byte-level BPE ---------------------------------------------------------------------------


def test_byte_level_structure(byte_level_tok: Any, byte_level_vocab: Vocabulary) -> None:
    v = byte_level_vocab
    eos = byte_level_tok.convert_tokens_to_ids("<|eos|>")
    assert v.size == len(byte_level_tok) == v.model_width
    assert v.eos_ids == {eos} and eos in v.special_ids
    assert v.tokens[eos] == b"<|eos|>"
    assert byte_level_tok.convert_tokens_to_ids("<|sep|>") in v.special_ids
    assert not v.strip_leading_space
    space = byte_level_tok.convert_tokens_to_ids("Ġ")
    assert v.tokens[space] == b" "
    assert v.tokens[byte_level_tok.convert_tokens_to_ids("ĠX")] == b" X"
    assert v.tokens[byte_level_tok.convert_tokens_to_ids("<tool café>")] == "<tool café>".encode()
    partial = [t for t in v.tokens if t.decode("utf-8", errors="ignore").encode() != t]
    assert len(partial) > 100  # lone bytes plus merged halves of é / 中 / 🙂
    assert any(len(t) > 1 for t in partial), "expected merged pieces that are still partial UTF-8"


@PROPERTY
@given(data=st.data())
def test_byte_level_random_ids_match_tokenizer(
    byte_level_tok: Any, byte_level_vocab: Vocabulary, data: Any
) -> None:
    ids = data.draw(st.lists(st.integers(0, byte_level_vocab.size - 1), max_size=12))
    raw = byte_level_vocab.decode(ids)
    text = _hf_decode(byte_level_tok, ids)
    # ByteLevel repairs invalid UTF-8 exactly like Python's errors="replace".
    assert raw.decode("utf-8", errors="replace") == text
    try:
        assert raw == raw.decode("utf-8").encode() == text.encode()
    except UnicodeDecodeError:
        assert "\ufffd" in text


@PROPERTY
@given(text=TEXT.filter(lambda s: "ĠX" not in s))  # the added token "ĠX" decodes as " X"
def test_byte_level_round_trip(
    byte_level_tok: Any, byte_level_vocab: Vocabulary, text: str
) -> None:
    ids = byte_level_tok.encode(text, add_special_tokens=False)
    assert byte_level_vocab.decode(ids) == text.encode()


@pytest.mark.parametrize("text", REAL_STRINGS)
def test_byte_level_round_trip_real_strings(
    byte_level_tok: Any, byte_level_vocab: Vocabulary, text: str
) -> None:
    ids = byte_level_tok.encode(text, add_special_tokens=False)
    assert byte_level_vocab.decode(ids) == text.encode()
    # Token by token the pieces need not be valid UTF-8, but their concatenation is.
    assert b"".join(byte_level_vocab.tokens[i] for i in ids) == text.encode()


# --- SentencePiece-style BPE with byte fallback -----------------------------------------------


def test_sentencepiece_structure(sp_tok: Any, sp_vocab: Vocabulary) -> None:
    v = sp_vocab
    assert v.size == len(sp_tok)
    assert v.eos_ids == {2} and {0, 1, 2} <= v.special_ids
    assert v.tokens[:3] == (b"<unk>", b"<s>", b"</s>")
    assert v.tokens[3 + 0x0A] == b"\n" and v.tokens[3 + 0xE4] == b"\xe4"
    assert v.tokens[sp_tok.convert_tokens_to_ids("▁")] == b" "
    assert v.strip_leading_space
    pieces = "".join(sp_tok.convert_ids_to_tokens(list(range(v.size))))
    assert "💻" not in pieces and "Ω" not in pieces, (
        "characters outside the corpus must use byte fallback"
    )


def _sp_sequences(vocab: Vocabulary) -> st.SearchStrategy[list[int]]:
    """Pieces, specials and runs of <0x..> tokens that spell whole characters (valid UTF-8)."""
    pieces = [i for i in range(vocab.size) if not 3 <= i < 3 + 256]
    piece = st.sampled_from(pieces).map(lambda i: [i])
    char = st.characters(exclude_categories=("Cs",)).map(lambda c: [3 + b for b in c.encode()])
    return st.lists(st.one_of(piece, char), max_size=10).map(
        lambda parts: [i for p in parts for i in p]
    )


@PROPERTY
@given(data=st.data())
def test_sentencepiece_random_ids_match_tokenizer(
    sp_tok: Any, sp_vocab: Vocabulary, data: Any
) -> None:
    ids = data.draw(_sp_sequences(sp_vocab))
    assert sp_vocab.decode(ids) == _hf_decode(sp_tok, ids).encode()


def test_sentencepiece_leading_space_strip(sp_tok: Any, sp_vocab: Vocabulary) -> None:
    hello = sp_tok.convert_tokens_to_ids("▁")
    space_byte = 3 + 0x20
    for ids in ([hello, hello], [space_byte, hello], [1, hello], [hello, 1]):
        assert sp_vocab.decode(ids) == _hf_decode(sp_tok, ids).encode()
    assert sp_vocab.decode([hello, hello]) == b" "
    assert sp_vocab.decode([1, hello]) == b"<s> "


def test_sentencepiece_invalid_byte_runs_are_raw_bytes(sp_tok: Any, sp_vocab: Vocabulary) -> None:
    """ByteFallback repairs a broken run with one U+FFFD per byte; Python's repair is coarser."""
    ids = [3 + 0xE4, 3 + 0xB8, 3 + ord("a")]
    assert sp_vocab.decode(ids) == b"\xe4\xb8a"
    assert _hf_decode(sp_tok, ids) == "\ufffd" * 3
    assert sp_vocab.decode(ids).decode("utf-8", errors="replace") == "\ufffda"


@PROPERTY
@given(text=TEXT.filter(lambda s: not s[:1].isspace() and "▁" not in s and "<" not in s))
def test_sentencepiece_round_trip(sp_tok: Any, sp_vocab: Vocabulary, text: str) -> None:
    ids = sp_tok.encode(text, add_special_tokens=False)
    assert sp_vocab.decode(ids) == text.encode()


@pytest.mark.parametrize("text", [s for s in REAL_STRINGS if not s[:1].isspace()])
def test_sentencepiece_round_trip_real_strings(
    sp_tok: Any, sp_vocab: Vocabulary, text: str
) -> None:
    ids = sp_tok.encode(text, add_special_tokens=False)
    assert sp_vocab.decode(ids) == text.encode()
    if "💻" in text or "Ω" in text:
        assert any(3 <= i < 3 + 256 for i in ids), "expected byte-fallback tokens"


def test_metaspace_decoder() -> None:
    """Metaspace alone leaves <0x..> pieces as literal text (as tokenizer.decode does); with
    ByteFallback in the chain they are bytes."""
    plain = _wrap(
        _sentencepiece_backend(decoders.Metaspace(replacement="▁", prepend_scheme="always")),
        eos_token="</s>",
    )
    v = Vocabulary.from_tokenizer(plain, cache=False)
    assert v.strip_leading_space
    assert v.tokens[3 + 0x0A] == b"<0x0A>" and v.tokens[plain.convert_tokens_to_ids("▁")] == b" "
    chained = _wrap(
        _sentencepiece_backend(
            decoders.Sequence([decoders.Metaspace(), decoders.ByteFallback(), decoders.Fuse()])
        ),
        eos_token="</s>",
    )
    cv = Vocabulary.from_tokenizer(chained, cache=False)
    assert cv.strip_leading_space and cv.tokens[3 + 0x0A] == b"\n"
    for tok, vocab in ((plain, v), (chained, cv)):
        for text in ("hello world", "Crème\nbrûlée", "a  b 🚀"):
            ids = tok.encode(text, add_special_tokens=False)
            assert vocab.decode(ids) == _hf_decode(tok, ids).encode()
    never = _wrap(
        _sentencepiece_backend(decoders.Metaspace(prepend_scheme="never")), eos_token="</s>"
    )
    assert not Vocabulary.from_tokenizer(never, cache=False).strip_leading_space


# --- errors -------------------------------------------------------------------------------------


def _tiny_backend(model: Any, decoder: Any) -> Tokenizer:
    backend = Tokenizer(model)
    backend.decoder = decoder
    backend.add_special_tokens([AddedToken("<eos>", special=True)])
    return backend


@pytest.mark.parametrize(
    ("model", "decoder", "named"),
    [
        (
            models.WordPiece({"a": 0, "##b": 1, "[UNK]": 2}, unk_token="[UNK]"),
            decoders.WordPiece(),
            "WordPiece",
        ),
        (models.BPE({"a": 0, "b": 1}, []), decoders.BPEDecoder(), "BPEDecoder"),
        (models.BPE({"a": 0, "b": 1}, []), decoders.CTC(), "CTC"),
        (
            models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"),
            decoders.ByteLevel(),
            "WordLevel",
        ),
        (
            models.BPE({"a": 0, "b": 1}, []),
            decoders.Sequence([decoders.ByteLevel(), decoders.Fuse()]),
            "ByteLevel",
        ),
        (
            models.BPE({"a": 0, "b": 1}, []),
            decoders.Sequence([decoders.Fuse(), decoders.Strip(" ", 2, 0)]),
            "Strip",
        ),
    ],
)
def test_unsupported_decoder_or_model_is_named(model: Any, decoder: Any, named: str) -> None:
    tok = _wrap(_tiny_backend(model, decoder), eos_token="<eos>")
    with pytest.raises(TokenizerError, match=named):
        Vocabulary.from_tokenizer(tok, cache=False)


def test_missing_decoder_is_refused() -> None:
    backend = Tokenizer(models.BPE({"a": 0, "b": 1}, []))
    backend.add_special_tokens([AddedToken("<eos>", special=True)])
    with pytest.raises(TokenizerError, match="no decoder"):
        Vocabulary.from_tokenizer(_wrap(backend, eos_token="<eos>"), cache=False)


def test_slow_tokenizer_is_refused() -> None:
    class SlowTokenizer:
        eos_token_id = 0

        def __len__(self) -> int:
            return 3

    with pytest.raises(TokenizerError, match="SlowTokenizer"):
        Vocabulary.from_tokenizer(SlowTokenizer())


def test_eos_is_required_and_merged(byte_level_tok: Any) -> None:
    backend = _byte_level_backend()
    no_eos = _wrap(backend)
    with pytest.raises(TokenizerError, match="EOS"):
        Vocabulary.from_tokenizer(no_eos, cache=False)
    v = Vocabulary.from_tokenizer(no_eos, eos_token_id=5, cache=False)
    assert v.eos_ids == {5} and 5 in v.special_ids
    own = byte_level_tok.eos_token_id
    merged = Vocabulary.from_tokenizer(byte_level_tok, eos_token_id=[own, 7], cache=False)
    assert merged.eos_ids == {own, 7}
    with pytest.raises(TokenizerError):
        Vocabulary.from_tokenizer(
            byte_level_tok,
            eos_token_id=len(byte_level_tok) + 3,
            model_width=len(byte_level_tok) + 8,
            cache=False,
        )


def test_model_width(byte_level_tok: Any) -> None:
    n = len(byte_level_tok)
    wide = Vocabulary.from_tokenizer(byte_level_tok, n + 8, cache=False)
    assert wide.size == n and wide.model_width == n + 8
    with pytest.raises(TokenizerError, match=rf"width mismatch.*{n}.*{n - 1}"):
        Vocabulary.from_tokenizer(byte_level_tok, n - 1, cache=False)


# --- from_bytes, decode, fingerprint ------------------------------------------------------------


def test_from_bytes_and_decode() -> None:
    v = Vocabulary.from_bytes([b"a", b" b", b"\xe4", b"</s>"], eos_ids=[3], model_width=6)
    assert v.size == 4 and v.model_width == 6 and v.special_ids == {3} and v.eos_ids == {3}
    assert v.decode([0, 1, 2]) == b"a b\xe4"
    assert v.decode([]) == b""
    with pytest.raises(IndexError):
        v.decode([4])
    with pytest.raises(IndexError):
        v.decode([-1])
    stripping = Vocabulary.from_bytes([b" a", b"b"], eos_ids=[1], strip_leading_space=True)
    assert stripping.decode([0, 0]) == b"a a" and stripping.decode([1, 0]) == b"b a"
    with pytest.raises(TokenizerError, match="EOS"):
        Vocabulary.from_bytes([b"a"], eos_ids=[])
    with pytest.raises(TokenizerError, match="outside"):
        Vocabulary.from_bytes([b"a"], eos_ids=[1], model_width=2)
    with pytest.raises(TokenizerError, match="width mismatch"):
        Vocabulary.from_bytes([b"a", b"b"], eos_ids=[1], model_width=1)


def test_fingerprint_covers_every_field() -> None:
    base = dict(tokens=[b"a", b"b", b"</s>"], eos_ids=[2])
    fp = Vocabulary.from_bytes(**base).fingerprint
    assert fp == Vocabulary.from_bytes(**base).fingerprint and len(fp) == 64
    variants = [
        Vocabulary.from_bytes([b"a", b"c", b"</s>"], eos_ids=[2]),
        Vocabulary.from_bytes([b"ab", b"", b"</s>"], eos_ids=[2]),
        Vocabulary.from_bytes(**base, special_ids=[0]),
        Vocabulary.from_bytes(**base, model_width=4),
        Vocabulary.from_bytes(**base, strip_leading_space=True),
        Vocabulary.from_bytes([b"a", b"b", b"</s>"], eos_ids=[1, 2]),
    ]
    assert len({fp, *(v.fingerprint for v in variants)}) == len(variants) + 1


def test_import_is_light() -> None:
    import subprocess

    code = "import guide.vocab, sys; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]


# --- caching ------------------------------------------------------------------------------------


def test_disk_and_memory_cache(
    byte_level_tok: Any, tmp_cache: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Vocabulary.from_tokenizer(byte_level_tok)
    files = list(tmp_cache.glob("*.pkl"))
    assert len(files) == 1
    assert Vocabulary.from_tokenizer(byte_level_tok) is first  # memory
    clear_memory_cache()

    def no_build(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("should have loaded from disk")

    monkeypatch.setattr(Vocabulary, "_build", no_build)
    from_disk = Vocabulary.from_tokenizer(byte_level_tok)
    assert from_disk is not first and from_disk.fingerprint == first.fingerprint
    # A different width or EOS set is a different entry, never a stale hit.
    monkeypatch.undo()
    monkeypatch.setenv("GUIDE_CACHE_DIR", str(tmp_cache.parent))
    wide = Vocabulary.from_tokenizer(byte_level_tok, len(byte_level_tok) + 8)
    assert wide.model_width == len(byte_level_tok) + 8 and len(list(tmp_cache.glob("*.pkl"))) == 2


@pytest.mark.parametrize(
    "garbage", [b"", b"not a pickle at all", b"\x80\x05K\x01.", b"\x80\x05\x95\xff\xff"]
)
def test_corrupt_or_stale_cache_file_is_rebuilt(
    byte_level_tok: Any, tmp_cache: Any, garbage: bytes
) -> None:
    reference = Vocabulary.from_tokenizer(byte_level_tok, cache=False)
    Vocabulary.from_tokenizer(byte_level_tok)
    (path,) = tmp_cache.glob("*.pkl")
    path.write_bytes(garbage)
    clear_memory_cache()
    rebuilt = Vocabulary.from_tokenizer(byte_level_tok)
    assert rebuilt.fingerprint == reference.fingerprint
    clear_memory_cache()
    assert Vocabulary._load(path, path.stem).fingerprint == reference.fingerprint  # rewritten


def test_cache_false_writes_nothing(byte_level_tok: Any, tmp_cache: Any) -> None:
    Vocabulary.from_tokenizer(byte_level_tok, cache=False)
    assert not tmp_cache.exists() or not list(tmp_cache.iterdir())


# --- the embedded SmolLM2 tokenizer -------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2_vocab(smollm2_tokenizer: Any) -> Vocabulary:
    return Vocabulary.from_tokenizer(smollm2_tokenizer, cache=False)


@pytest.mark.model
def test_smollm2_structure(smollm2_tokenizer: Any, smollm2_vocab: Vocabulary) -> None:
    v = smollm2_vocab
    assert len(smollm2_tokenizer) == v.size == v.model_width == 49152
    assert v.eos_ids == {2} and v.tokens[2] == b"<|im_end|>"
    # <|endoftext|>, <|im_start|>, <|im_end|>, <repo_name>, ...: special in the backend only.
    assert set(range(17)) <= v.special_ids
    # The GGUF-derived decoder is ByteLevel(add_prefix_space=True), yet decode keeps leading spaces.
    world = smollm2_tokenizer.convert_tokens_to_ids("Ġworld")
    assert _hf_decode(smollm2_tokenizer, [world]) == " world"
    assert not v.strip_leading_space and v.decode([world]) == b" world"


@pytest.mark.model
def test_smollm2_eos_merging(smollm2_tokenizer: Any) -> None:
    assert Vocabulary.from_tokenizer(
        smollm2_tokenizer, eos_token_id=[2, 0], cache=False
    ).eos_ids == {0, 2}
    assert Vocabulary.from_tokenizer(smollm2_tokenizer, eos_token_id=0, cache=False).eos_ids == {
        0,
        2,
    }


@pytest.mark.model
@pytest.mark.parametrize("text", REAL_STRINGS + ["<|im_start|>user\nHi<|im_end|>\n"])
def test_smollm2_round_trip(smollm2_tokenizer: Any, smollm2_vocab: Vocabulary, text: str) -> None:
    ids = smollm2_tokenizer.encode(text, add_special_tokens=False)
    assert smollm2_vocab.decode(ids) == text.encode()


@pytest.mark.model
def test_smollm2_random_ids_match_tokenizer(
    smollm2_tokenizer: Any, smollm2_vocab: Vocabulary
) -> None:
    rng = random.Random(20240613)
    for _ in range(300):
        ids = [rng.randrange(smollm2_vocab.size) for _ in range(rng.randrange(1, 10))]
        text = _hf_decode(smollm2_tokenizer, ids)
        assert smollm2_vocab.decode(ids).decode("utf-8", errors="replace") == text, ids


@pytest.mark.model
def test_smollm2_model_width(smollm2_tokenizer: Any) -> None:
    assert Vocabulary.from_tokenizer(smollm2_tokenizer, 49160, cache=False).model_width == 49160
    with pytest.raises(TokenizerError, match=r"width mismatch.*49152.*49000"):
        Vocabulary.from_tokenizer(smollm2_tokenizer, 49000, cache=False)


@pytest.mark.model
def test_smollm2_timing(smollm2_tokenizer: Any, tmp_cache: Any) -> None:
    start = time.perf_counter()
    cold = Vocabulary.from_tokenizer(smollm2_tokenizer, cache=False)
    cold_s = time.perf_counter() - start
    Vocabulary.from_tokenizer(smollm2_tokenizer)  # writes the disk cache
    clear_memory_cache()
    start = time.perf_counter()
    warm = Vocabulary.from_tokenizer(smollm2_tokenizer)
    disk_s = time.perf_counter() - start
    assert warm.fingerprint == cold.fingerprint
    assert cold_s <= 2.0, f"cold build took {cold_s:.3f} s"
    assert disk_s <= 0.2, f"disk-cache load took {disk_s:.3f} s"
