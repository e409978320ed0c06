"""Regex constraints on the real 49,152-token SmolLM2 vocabulary.

Completeness: every canonical tokenization of a matching string is accepted token by token.
Soundness: random walks through the masks only ever produce matching strings.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import guide
from guide.testing import random_walk, shortest_completion

pytestmark = pytest.mark.model

WORKLOADS = Path(__file__).resolve().parents[2] / "shared" / "data" / "workloads.json"
PATTERNS = [
    r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])",
    r"\(\d{3}\) \d{3}-\d{4}",
    r"[A-Z][a-z]+( [A-Z][a-z]+)*",
    r'"([^"\\\n]|\\["\\n])*"',
    r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?",
    r"(true|false|null)",
    r"[a-z_][a-z0-9_]*\(\)",
    r"[ \t\n]*\{[ \t\n]*\}",
    r"(café|naïve|中文|😀)+",
]
TEXT = st.characters(codec="ascii") | st.sampled_from("éïñ中文😀\u00a0\u2028")


@pytest.fixture(scope="module")
def vocab(smollm2_tokenizer):
    return guide.Vocabulary.from_tokenizer(smollm2_tokenizer)


@pytest.mark.parametrize("pattern", PATTERNS)
@given(data=st.data())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
def test_canonical_tokenizations_are_accepted(pattern, data, smollm2_tokenizer, vocab):
    text = data.draw(st.from_regex(pattern, fullmatch=True, alphabet=TEXT))
    ids = smollm2_tokenizer.encode(text, add_special_tokens=False)
    # the GGUF tokenizer has no token for some control bytes (e.g. \x1d) and drops them when
    # encoding: such a text has no tokenization at all, canonical or not
    assume(smollm2_tokenizer.decode(ids) == text)
    assert vocab.decode(ids) == text.encode()
    matcher = guide.regex(pattern).compile(vocab).matcher()
    for i, t in enumerate(ids):
        assert t in matcher.allowed_tokens(), (text, ids[:i], t)
        assert matcher.advance(t)
    assert matcher.is_accepting()
    assert matcher.advance(smollm2_tokenizer.eos_token_id)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_random_walks_on_the_real_vocabulary_match(pattern, vocab):
    """Every walk ends in a match, or (cut off by max_tokens) is a prefix of one: `re` is the oracle."""
    compiled = guide.regex(pattern).compile(vocab)
    rng = random.Random(7)
    for _ in range(30):
        matcher = compiled.matcher()
        tokens, ended = random_walk(matcher, rng, max_tokens=60)
        text = vocab.decode(tokens)
        if not ended:
            text += shortest_completion(compiled.dfa, matcher.state)
        assert re.fullmatch(pattern, text.decode("utf-8")), text


def test_workload_document_is_accepted(smollm2_tokenizer, vocab):
    workload = json.loads(WORKLOADS.read_text())["regex"]["datetime"]
    matcher = guide.regex(workload["pattern"]).compile(vocab).matcher()
    for t in smollm2_tokenizer.encode(workload["doc"], add_special_tokens=False):
        assert matcher.advance(t)
    assert matcher.is_accepting()


def test_bytes_without_a_token_are_pruned_from_masks(vocab):
    # SmolLM2 has no token holding byte 0x04: "a\x04" is alive for bytes but not for tokens
    assert not any(b"\x04" in t for t in vocab.tokens)
    compiled = guide.regex("a\x04?b?").compile(vocab)
    m = compiled.matcher()
    assert m.advance(vocab.tokens.index(b"a"))
    assert set(m.allowed_tokens()) >= {vocab.tokens.index(b"b"), 2}
    with pytest.raises(guide.EmptyLanguageError):
        guide.regex("\x04").compile(vocab)
