"""guide.reasoning_then: free reasoning, a byte-level switch at the delimiter, a hard cap, a valid answer."""

from __future__ import annotations

import json
import random
import re

import jsonschema
import pytest

import guide
from guide.errors import GrammarError
from guide.reasoning import ReasoningThen, decoupled, split_reasoning
from guide.testing import random_walk, toy_vocab
from guide.vocab import Vocabulary

# toy tokens: the delimiters in pieces, and tokens that run across the end of `</think>`
EXTRA = [b"<think>", b"</", b"think", b"</th", b"ink>", b">", b">1", b"k>{", b"hello", b" world"]
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99}}, "required": ["n"],
          "additionalProperties": False}


@pytest.fixture(scope="module")
def vocab():
    return toy_vocab(EXTRA)


def _ids(vocab: Vocabulary, *pieces: bytes) -> list[int]:
    return [vocab.tokens.index(p) for p in pieces]


def _walk_to(matcher, ids) -> None:
    for t in ids:
        assert matcher.advance(t), t


def test_open_is_forced_then_reasoning_is_free_without_eos(vocab):
    m = guide.reasoning_then(guide.regex(r"[0-9]+")).compile(vocab).matcher()
    assert {vocab.tokens[t] for t in m.allowed_tokens()} == {b"<", b"<think>"}
    _walk_to(m, _ids(vocab, b"<think>", b"hello", b" world"))
    allowed = set(m.allowed_tokens())
    eos = next(iter(vocab.eos_ids))
    assert eos not in allowed and not m.is_accepting()
    assert len(allowed) == vocab.size - 1  # every text token, EOS aside


def test_switch_on_a_delimiter_split_over_tokens(vocab):
    m = guide.reasoning_then(guide.regex(r"[0-9]+")).compile(vocab).matcher()
    _walk_to(m, _ids(vocab, b"<think>", b"hello", b"</th", b"ink>"))
    assert {vocab.tokens[t] for t in m.allowed_tokens()} == {bytes([d]) for d in b"0123456789"}
    _walk_to(m, _ids(vocab, b"4", b"2"))
    assert m.is_accepting()
    assert split_reasoning(vocab.decode_text(_ids(vocab, b"<think>", b"hello", b"</th", b"ink>", b"4", b"2"))) == ("hello", "42")


def test_tokens_running_past_the_delimiter_are_masked(vocab):
    m = guide.reasoning_then(guide.regex(r"[0-9]+")).compile(vocab).matcher()
    _walk_to(m, _ids(vocab, b"<think>", b"</", b"think"))
    allowed = {vocab.tokens[t] for t in m.allowed_tokens()}
    assert b">" in allowed and b">1" not in allowed  # `>1` would start the answer mid-token
    m2 = guide.reasoning_then(guide.regex(r"[0-9]+")).compile(vocab).matcher()
    _walk_to(m2, _ids(vocab, b"<think>", b"</th", b"i", b"n"))
    assert b"k>{" not in {vocab.tokens[t] for t in m2.allowed_tokens()}
    # `</` then other text is just reasoning: the partial match resets
    _walk_to(m2, _ids(vocab, b"hello"))
    assert m2.phase == 1 and m2.pos == 0


@pytest.mark.parametrize("cap", [0, 1, 5, 12])
def test_reasoning_stops_at_the_cap_and_the_answer_validates(vocab, cap):
    c = guide.reasoning_then(guide.json_schema(SCHEMA), max_reasoning_tokens=cap)
    compiled = c.compile(vocab)
    rng = random.Random(cap)
    done = 0
    for _ in range(40):
        m = compiled.matcher()
        tokens, finished = random_walk(m, rng, max_tokens=200, stop_p=0.9)
        text = vocab.decode(tokens)
        assert text.startswith(b"<think>")
        close = text.index(b"</think>")
        # free tokens: after the open delimiter's tokens, up to the token that ends `</think>`
        spelled = b""
        free = 0
        for t in tokens:
            if len(spelled) >= len(b"<think>"):
                free += 1
            spelled += vocab.tokens[t]
            if len(spelled) >= close + len(b"</think>"):
                break
        assert free <= cap + len(b"</think>")
        if finished:
            done += 1
            answer = text[close + len(b"</think>"):].decode()
            jsonschema.validate(json.loads(answer), SCHEMA)
    assert done >= 20


def test_at_the_cap_only_the_delimiter_may_follow(vocab):
    m = guide.reasoning_then(guide.regex("a"), max_reasoning_tokens=2).compile(vocab).matcher()
    _walk_to(m, _ids(vocab, b"<think>", b"hello", b"<"))
    assert {vocab.tokens[t] for t in m.allowed_tokens()} == {b"/"}  # `</` is not a prefix of `/think>`
    _walk_to(m, _ids(vocab, b"/"))
    assert {vocab.tokens[t] for t in m.allowed_tokens()} == {b"t", b"think"}
    assert m.reasoning_tokens == 3


def test_fork_and_rollback_round_trip(vocab):
    m = guide.reasoning_then(guide.regex(r"[0-9]+"), max_reasoning_tokens=3).compile(vocab).matcher()
    ids = _ids(vocab, b"<think>", b"hello", b"</th", b"ink>", b"7")
    _walk_to(m, ids)
    f = m.fork()
    m.rollback(3)
    assert m.phase == 1 and m.reasoning_tokens == 1 and m.inner is None
    _walk_to(m, ids[2:])
    assert m.is_accepting() and f.is_accepting()
    m.rollback(len(ids))
    assert m.allowed_tokens() == guide.reasoning_then(guide.regex(r"[0-9]+"), max_reasoning_tokens=3).compile(vocab).matcher().allowed_tokens()
    with pytest.raises(ValueError, match="roll back"):
        m.rollback(1)


def test_empty_open_and_custom_delimiters(vocab):
    m = guide.reasoning_then(guide.regex("ok"), open="", close=">>").compile(vocab).matcher()
    _walk_to(m, _ids(vocab, b"hello", b">", b">"))
    assert {vocab.tokens[t] for t in m.allowed_tokens()} == {b"o"}


def test_delimiter_the_vocabulary_cannot_spell_is_a_clear_error():
    no_gt = Vocabulary.from_bytes([bytes([b]) for b in range(256) if b != ord(">")] + [b"<eos>"], eos_ids=[255])
    with pytest.raises(GrammarError, match=r"close delimiter b'</think>' cannot be written"):
        guide.reasoning_then(guide.regex("a"), open="").compile(no_gt)
    with pytest.raises(GrammarError, match=r"open delimiter b'<think>' cannot be written"):
        guide.reasoning_then(guide.regex("a")).compile(no_gt)
    with pytest.raises(ValueError, match="close"):
        guide.reasoning_then(guide.regex("a"), close="")
    with pytest.raises(ValueError, match="max_reasoning_tokens"):
        guide.reasoning_then(guide.regex("a"), max_reasoning_tokens=-1)
    with pytest.raises(TypeError):
        guide.reasoning_then("a")  # type: ignore[arg-type]
    with pytest.raises(GrammarError, match="no '</think>'"):
        split_reasoning("no delimiter")


@pytest.mark.model
def test_multi_token_delimiters_on_the_smollm2_tokenizer(smollm2_tokenizer):
    """`<think>` and `</think>` are 3 tokens each for SmolLM2: the switch still lands on the byte."""
    vocab = Vocabulary.from_tokenizer(smollm2_tokenizer)
    assert len(smollm2_tokenizer.encode("</think>", add_special_tokens=False)) > 1
    m = guide.reasoning_then(guide.regex(r"[0-9]+"), max_reasoning_tokens=4).compile(vocab).matcher()
    _walk_to(m, smollm2_tokenizer.encode("<think>Two plus two", add_special_tokens=False))
    assert m.reasoning_tokens == 3
    m.advance(smollm2_tokenizer.encode(" is", add_special_tokens=False)[0])
    forced = [vocab.tokens[t] for t in m.allowed_tokens()]
    assert forced and all(b"</think>".startswith(t) for t in forced)
    _walk_to(m, smollm2_tokenizer.encode("</think>", add_special_tokens=False))
    assert all(re.fullmatch(rb"[0-9]+", vocab.tokens[t]) for t in m.allowed_tokens())




@pytest.mark.model
@pytest.mark.usefixtures("one_torch_thread")
def test_embedded_model_reasons_then_answers_valid_json():
    model, tok = guide.load_default_model()
    c = guide.reasoning_then(guide.json_schema(SCHEMA), max_reasoning_tokens=16)
    text = guide.generate(model, tok, "What is 7 times 6? Answer as JSON {\"n\": ...}.", c, max_new_tokens=48)
    reasoning, answer = split_reasoning(text)
    assert len(tok.encode(reasoning, add_special_tokens=False)) <= 16 + 3
    jsonschema.validate(json.loads(answer), SCHEMA)
    two = decoupled(model, tok, "What is 7 times 6?", guide.json_schema(SCHEMA), max_draft_tokens=8, max_new_tokens=16)
    assert two.draft
    jsonschema.validate(json.loads(two.answer), SCHEMA)


def test_key_and_type():
    c = guide.reasoning_then(guide.regex("a"), max_reasoning_tokens=3)
    assert isinstance(c, ReasoningThen)
    assert c == guide.reasoning_then(guide.regex("a"), max_reasoning_tokens=3)
    assert c != guide.reasoning_then(guide.regex("a"), max_reasoning_tokens=4)


def test_decoupled_needs_a_draft_slot():
    with pytest.raises(ValueError, match="draft"):
        decoupled(None, None, "q", guide.regex("a"), instruction="no slot")  # type: ignore[arg-type]
