"""Property tests at the CI budget of the reliability issue: random JSON schemas (500), random
regexes (500) through the token-level engine; the 200 built-in grammar walks on the real
vocabulary are `test_cfg.py::test_random_walks_real_vocab_parse_with_lark`.

Soundness: every walk through the masks that ends (EOS allowed and taken) is valid for its oracle
(`jsonschema`, `re.fullmatch`, lark's own parser). Completeness: random valid instances, drawn by
an independent generator from the schema or `st.from_regex`, are accepted token by token in their tokenization
(greedy longest match on the toy vocabulary; the real tokenizer's encoding on SmolLM2).
`GUIDE_FUZZ_SCALE=10 make test` (or pytest) runs ten times as many examples.
"""

from __future__ import annotations

import json
import os
import random
import re
import warnings

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schema_strategies import dump, instances, oracle, schemas

import guide
from guide.errors import EmptyLanguageError, UnsupportedFeatureError
from guide.grammars.json_schema import GuideSchemaWarning
from guide.testing import random_walk, toy_vocab

SCALE = int(os.environ.get("GUIDE_FUZZ_SCALE", "1"))  # GUIDE_FUZZ_SCALE=10: a longer run
FUZZ = {"deadline": None, "suppress_health_check": list(HealthCheck), "database": None}

JSON_TOKENS = [
    b'{"', b'":', b'",', b'"}', b'":"', b'"a', b'"b', b'"c', b"ab", b"bc", b"true", b"null", b"false",
    b"12", b"-1", b"0.", b".5", b"e+", b"E-", b"],", b"[{", b"}]", b"},{", b'\\"', b"\\u00", b'["',
    "é".encode(), b'"x"', b"k", b'1,', b"[]", b"{}", b'"-', b'""', b"00", b"@a.", b"T1", b":0",
]


@pytest.fixture(scope="module")
def json_vocab():
    return toy_vocab(JSON_TOKENS)


def greedy_tokens(vocab, text: bytes) -> list[int]:
    """Longest-match tokenization: the toy vocabulary's stand-in for a canonical one."""
    by_bytes = {tok: i for i, tok in enumerate(vocab.tokens) if i not in vocab.special_ids}
    longest = max(map(len, by_bytes))
    out, pos = [], 0
    while pos < len(text):
        for size in range(min(longest, len(text) - pos), 0, -1):
            tid = by_bytes.get(text[pos : pos + size])
            if tid is not None:
                out.append(tid)
                pos += size
                break
    return out


def accepts_tokens(compiled, ids: list[int]) -> bool:
    matcher = compiled.matcher()
    for tid in ids:
        if tid not in matcher.allowed_tokens() or not matcher.advance(tid):
            return False
    return matcher.is_accepting()


def order_keys(schema, value):
    """Re-serialise `value` with object keys in the order a property_order="schema" grammar expects:
    listed properties in schema order, others after them."""
    if isinstance(value, list):
        items = schema.get("items") if isinstance(schema, dict) else None
        prefix = schema.get("prefixItems", []) if isinstance(schema, dict) else []
        return [order_keys(prefix[i] if i < len(prefix) else items, v) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    names: list[str] = []
    subs: dict[str, list] = {}

    def collect(s):
        if not isinstance(s, dict):
            return
        for k, sub in s.get("properties", {}).items():
            if k not in names:
                names.append(k)
            subs.setdefault(k, []).append(sub)
        for kw in ("anyOf", "allOf", "oneOf"):
            for branch in s.get(kw, []):
                collect(branch)
        if isinstance(s.get("additionalProperties"), dict):
            subs.setdefault("", []).append(s["additionalProperties"])

    collect(schema)
    rank = {k: i for i, k in enumerate(names)}
    keys = sorted(value, key=lambda k: (rank.get(k, len(rank)), list(value).index(k)))

    def sub_for(k):
        cands = subs.get(k) or subs.get("") or [None]
        return cands[0] if len(cands) == 1 else {"anyOf": cands}

    return {k: order_keys(sub_for(k), value[k]) for k in keys}


def compile_or_skip(schema, vocab):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", GuideSchemaWarning)
            return guide.json_schema(schema).compile(vocab)
    except UnsupportedFeatureError:
        assume(False)  # strict mode refused it, naming keyword and pointer: tested elsewhere
    except (EmptyLanguageError, GuideSchemaWarning):
        assume(False)  # an unsatisfiable schema
    raise AssertionError("unreachable")


@settings(max_examples=500 * SCALE, **FUZZ)
@given(schema=schemas, data=st.data())
def test_random_schemas_walks_validate_and_instances_are_accepted(schema, data, json_vocab):
    compiled = compile_or_skip(schema, json_vocab)
    rng = random.Random(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    for _ in range(3):
        tokens, ended = random_walk(compiled.matcher(), rng, max_tokens=80, stop_p=0.6)
        if ended:
            text = json_vocab.decode(tokens).decode("utf-8")
            assert oracle(schema, json.loads(text)), (schema, text)
    value = data.draw(instances(schema), label="instance")
    if not oracle(schema, value):
        return  # the independent generator missed (allOf, formats): nothing to check
    text = dump(order_keys(schema, value)).encode()
    assert accepts_tokens(compiled, greedy_tokens(json_vocab, text)), (schema, text)


# ----------------------------------------------------------------------------- random regexes

REGEX_TOKENS = [b"ab", b"ba", b"a-", b"..", "é".encode(), "中".encode()[:2], "中".encode()[2:], b"0a", b"\n"]


def _regexes() -> st.SearchStrategy[str]:
    atoms = st.sampled_from(
        ["a", "b", "-", r"\.", "é", "中", "0", "[a-c]", "[^ab]", r"\d", r"\w", r"\s", ".", "[0-9é]", r"\n"]
    )

    def extend(inner):
        quant = st.sampled_from(["*", "+", "?", "{2}", "{0,3}", "{1,2}", "*?", "{2,}"])
        return st.one_of(
            st.lists(inner, min_size=2, max_size=3).map("".join),
            st.lists(inner, min_size=2, max_size=3).map(lambda xs: "(" + "|".join(xs) + ")"),
            st.tuples(inner, quant).map(lambda p: f"(?:{p[0]}){p[1]}"),
        )

    return st.recursive(atoms, extend, max_leaves=8)


@pytest.fixture(scope="module")
def regex_vocab():
    return toy_vocab(REGEX_TOKENS)


@settings(max_examples=500 * SCALE, **FUZZ)
@given(pattern=_regexes(), data=st.data())
def test_random_regexes_walks_fullmatch_and_matches_are_accepted(pattern, data, regex_vocab):
    try:
        compiled = guide.regex(pattern).compile(regex_vocab)
    except EmptyLanguageError:  # e.g. only strings no token sequence spells: none here
        pytest.fail(f"{pattern!r} has matches but compiled to an empty language")
    rng = random.Random(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    for _ in range(3):
        tokens, ended = random_walk(compiled.matcher(), rng, max_tokens=40, stop_p=0.5)
        if ended:
            text = regex_vocab.decode(tokens).decode("utf-8")
            assert re.fullmatch(pattern, text), (pattern, text)
    text = data.draw(st.from_regex(pattern, fullmatch=True), label="match")
    assert accepts_tokens(compiled, greedy_tokens(regex_vocab, text.encode())), (pattern, text)


# ----------------------------------------------------------------------------- the real vocabulary


@pytest.fixture(scope="module")
def smollm2_vocab(smollm2_tokenizer):
    return guide.Vocabulary.from_tokenizer(smollm2_tokenizer)


@pytest.mark.model
@settings(max_examples=80 * SCALE, **FUZZ)
@given(schema=schemas, data=st.data())
def test_random_schema_instances_accepted_in_smollm2_canonical_tokenization(
    schema, data, smollm2_tokenizer, smollm2_vocab
):
    compiled = compile_or_skip(schema, smollm2_vocab)
    value = data.draw(instances(schema), label="instance")
    if not oracle(schema, value):
        return
    text = dump(order_keys(schema, value))
    ids = smollm2_tokenizer.encode(text, add_special_tokens=False)
    if smollm2_tokenizer.decode(ids) != text:
        return  # a character SmolLM2 cannot spell (its GGUF lacks a few control bytes)
    assert accepts_tokens(compiled, ids), (schema, text, ids)
    tokens, ended = random_walk(compiled.matcher(), random.Random(0), max_tokens=60, stop_p=0.6)
    if ended:
        assert oracle(schema, json.loads(smollm2_vocab.decode(tokens))), schema
