"""Regex and choice constraints: byte-DFA exactness, token masks, errors, fork/rollback."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import guide
from guide.grammars.bytedfa import utf8_sequences
from guide.testing import random_walk, shortest_completion, toy_vocab

PATTERNS = [
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])",
    r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])",
    r"(yes|no|maybe)",
    r"[a-z]+(_[a-z0-9]+)*",
    r'"([^"\\]|\\.)*"',
    r"é+[^a-z]?",
    r"(\+|-)?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?",
    r"\w+@\w+\.com",
    r"[^\n]{0,12}",
    r"中文|😀+",
    r"\u00e9\u4e2d?",
]

EXTRA = [b"20", b"2024", b"-0", b"12", b"yes", b"no", b"ma", b"ybe", b"\xc3", b"\xa9", b"\xc3\xa9",
         b"\xe4\xb8", b"\xad", b"abc", b"_x", b"\\\"", b"\"a", b"e+", b".5", b"@ex", b".com", b"\xf0\x9f"]


@pytest.fixture(scope="module")
def vocab():
    return toy_vocab(EXTRA)


@given(st.integers(0, 0x10FFFF), st.integers(0, 4000))
@settings(max_examples=300, deadline=None)
def test_utf8_sequences_cover_exactly_the_range(lo, span):
    hi = min(lo + span, 0x10FFFF)
    expected = {chr(c).encode() for c in range(lo, hi + 1) if not 0xD800 <= c <= 0xDFFF}
    got = set()
    for seq in utf8_sequences(lo, hi):
        partial = [b""]
        for a, b in seq:
            partial = [p + bytes([x]) for p in partial for x in range(a, b + 1)]
        got.update(partial)
    assert got == expected


@pytest.mark.parametrize("pattern", PATTERNS)
def test_byte_dfa_agrees_with_re_fullmatch(pattern):
    dfa = guide.regex(pattern).byte_dfa()
    rng = random.Random(0)
    alphabet = "0123456789-T:.+Zabcyesnomaé中文😀_@\"\\ \nxE١Kk\u212a"
    samples = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    for s in samples:
        assert dfa.matches(s.encode()) == (re.fullmatch(pattern, s) is not None), s


@pytest.mark.parametrize("pattern", PATTERNS)
@given(data=st.data())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_matching_strings_are_accepted(pattern, data):
    text = data.draw(st.from_regex(pattern, fullmatch=True, alphabet=st.characters(codec="ascii") | st.sampled_from("é中文😀")))
    dfa = guide.regex(pattern).byte_dfa()
    assert dfa.matches(text.encode()), text


@pytest.mark.parametrize("pattern", PATTERNS)
def test_random_walks_produce_full_matches(pattern, vocab):
    compiled = guide.regex(pattern).compile(vocab)
    rng = random.Random(1)
    for _ in range(40):
        matcher = compiled.matcher()
        tokens, ended = random_walk(matcher, rng)
        text = vocab.decode(tokens)
        if ended:
            assert matcher.is_accepting()
            assert matcher.advance(next(iter(vocab.eos_ids)))
            assert matcher.is_finished()
        else:
            text += shortest_completion(compiled.dfa, matcher.state)
        assert re.fullmatch(pattern, text.decode("utf-8")), text


def test_mask_contains_eos_exactly_when_accepting(vocab):
    compiled = guide.regex(r"ab?").compile(vocab)
    eos = next(iter(vocab.eos_ids))
    m = compiled.matcher()
    assert eos not in m.allowed_tokens() and not m.is_accepting()
    assert m.advance(ord("a"))
    assert eos in m.allowed_tokens() and m.is_accepting() and not m.is_finished()
    assert m.advance(ord("b"))
    assert m.allowed_tokens() == [eos] and m.is_finished()
    assert not m.advance(ord("b"))


def test_multibyte_tokens_and_partial_utf8(vocab):
    compiled = guide.regex("é+").compile(vocab)
    m = compiled.matcher()
    allowed = set(m.allowed_tokens())
    ids = {tok: i for i, tok in enumerate(vocab.tokens)}
    assert {ids[b"\xc3"], ids[b"\xc3\xa9"], 0xC3} <= allowed
    assert ids[b"\xa9"] not in allowed and ids[b"abc"] not in allowed
    assert m.advance(ids[b"\xc3"]) and not m.is_accepting()
    assert set(m.allowed_tokens()) == {0xA9, ids[b"\xa9"]}


def test_masks_exclude_special_and_out_of_vocabulary_ids():
    vocab = toy_vocab([b"ab"], model_width=300)
    compiled = guide.regex(r"[\x00-\xff]*").compile(vocab)
    allowed = compiled.matcher().allowed_tokens()
    assert max(allowed) == vocab.size - 1  # the EOS id: accepting at start
    assert all(t < vocab.size for t in allowed)


def test_fork_and_rollback(vocab):
    m = guide.regex(r"\d{4}-\d{2}").compile(vocab).matcher()
    ids = {tok: i for i, tok in enumerate(vocab.tokens)}
    assert m.advance(ids[b"2024"])
    before = m.allowed_tokens()
    f = m.fork()
    assert f.advance(ord("-")) and f.advance(ord("1"))
    assert m.allowed_tokens() == before
    f.rollback(2)
    assert f.allowed_tokens() == before
    with pytest.raises(ValueError):
        f.rollback(5)


def test_choice(vocab):
    c = guide.choice(["yes", "no", "a.b (c)"]).compile(vocab)
    rng = random.Random(3)
    seen = set()
    for _ in range(60):
        tokens, _ = random_walk(c.matcher(), rng, stop_p=1.0)
        seen.add(vocab.decode(tokens).decode())
    assert seen == {"yes", "no", "a.b (c)"}
    assert guide.choice(["a", "b"]) == guide.choice(["a", "b"])


def test_composition(vocab):
    both = (guide.regex(r"[a-z]+") & guide.regex(r"...")).compile(vocab)
    m = both.matcher()
    for ch in b"abc":
        assert m.advance(ch)
    assert m.is_accepting() and m.is_finished()
    assert not m.advance(ord("d"))
    either = (guide.regex(r"\d+") | guide.regex(r"[a-z]")).compile(vocab)
    m = either.matcher()
    assert m.advance(ord("x")) and m.is_finished()
    m.rollback(1)
    assert m.advance(ord("7")) and not m.is_finished() and m.advance(ord("8"))
    assert not m.advance(ord("x"))


def test_anchors_are_redundant_under_fullmatch(vocab):
    a = guide.regex(r"^ab$").byte_dfa()
    assert a.matches(b"ab") and not a.matches(b"ab\n")
    assert guide.regex(r"a\$").byte_dfa().matches(b"a$")


@pytest.mark.parametrize(
    ("pattern", "feature"),
    [(r"(a)\1", "backreference"), (r"a(?=a)a", "lookaround"), (r"(?:(?=a)a)*", "lookaround"),
     (r"b(?!a)", "lookaround"), (r"(?<=a)b", "lookaround"),
     (r"a^b", "anchor"), (r"\bword", "boundary"), (r"(?>a)", "atomic")],
)
def test_unsupported_constructs_are_named(pattern, feature):
    with pytest.raises(guide.UnsupportedFeatureError, match=feature):
        guide.regex(pattern)


@pytest.mark.parametrize(
    "pattern",
    [r"(?=[ab]{2})a*b*c*", r"(?=.{2,4})(?:ab|c)+|x", r"(?:(?=\w{3})[a-z]+|[0-9]+)", r"(?=a)(?=.b)(?:ab|ac|bb)c?",
     r"(?=[^x]{0,3}x)\w+|y", r"(?!ab)[a-c]{0,4}", r"(?!a)(?=.b)[a-c]{1,3}", r"(?!x)\w+|xyz",
     r"(?![0-9])(?!_)\w{1,3}"],
)
def test_leading_lookahead_is_an_intersection(pattern):
    """`(?=A)R` / `(?!A)R` at the start of a top-level alternative: exactly re.fullmatch (random
    strings); the negative one is a product with the complement of A's prefix automaton."""
    dfa = guide.regex(pattern).byte_dfa()
    rng = random.Random(7)
    for _ in range(5000):
        s = "".join(rng.choice("abcxyz09_") for _ in range(rng.randint(0, 7)))
        assert dfa.matches(s.encode()) == bool(re.fullmatch(pattern, s)), s


def test_invalid_regex_names_the_position():
    with pytest.raises(guide.GrammarError, match="position 3"):
        guide.regex("abc)")


def test_empty_language_errors(vocab):
    with pytest.raises(guide.EmptyLanguageError):
        guide.regex(r"[^\x00-\U0010ffff]").compile(vocab)
    no_z = guide.Vocabulary.from_bytes([b"a", b"b", b"<eos>"], eos_ids=[2], special_ids=[2])
    with pytest.raises(guide.EmptyLanguageError, match="no token"):
        guide.regex("z").compile(no_z)


def test_compile_cache_memory_and_disk(vocab, tmp_path, monkeypatch):
    from guide.constraint import COMPILE_CACHE

    monkeypatch.setenv("GUIDE_CACHE_DIR", str(tmp_path))
    spec = guide.regex(r"[a-f]{2,5}x")
    first = spec.compile(vocab)
    assert spec.compile(vocab) is first
    COMPILE_CACHE.clear()
    again = guide.regex(r"[a-f]{2,5}x").compile(vocab)
    assert again is not first and np.array_equal(again.masks, first.masks)
    assert again.vocab is vocab and list((tmp_path / "compiled").iterdir())
    m = again.matcher()
    assert m.advance(ord("a")) and m.advance(ord("b")) and m.advance(ord("x")) and m.is_accepting()


@pytest.mark.parametrize(
    "pattern",
    [r"(?i)k", r"(?i)[a-c]+s", r"\d+", r"[^\W\d_]+", r"(?a)\w+", r"(?s)a.b", r"(?x) a b # comment", r"\s+"],
)
def test_flags_and_unicode_classes_follow_re(pattern):
    dfa = guide.regex(pattern).byte_dfa()
    samples = ["k", "K", "\u212a", "abcS", "ABCs", "ſ", "١٢", "12", "éa", "a_b", "a\nb", "ab", "\u00a0", " \t", "x"]
    for s in samples:
        assert dfa.matches(s.encode()) == (re.fullmatch(pattern, s) is not None), (pattern, s)


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(a|aa)*b", r"(x+x+)+y", r"a{1,200}b"])
def test_redos_patterns_compile_small_and_fast(pattern, vocab):
    import time

    start = time.perf_counter()
    compiled = guide.regex(pattern).compile(vocab, cache=False)
    assert time.perf_counter() - start < 5  # generous: a bound, not a benchmark
    assert compiled.dfa.n_states <= 210


def test_oversized_patterns_fail_cleanly():
    import time

    from guide.grammars.re_compile import compile_regex

    start = time.perf_counter()
    with pytest.raises(guide.GrammarError, match="automaton states"):
        compile_regex("a{1,100000}")
    with pytest.raises(guide.GrammarError, match="exceeds .* states|budget"):
        compile_regex(".{0,40}x.{0,40}", max_dfa_states=5000)
    with pytest.raises(guide.GrammarError, match="budget"):
        compile_regex("[ab]{0,30}a[ab]{0,30}", time_budget_s=0.2, max_dfa_states=10**7)
    assert time.perf_counter() - start < 15


def test_bounds_are_keywords_of_regex(vocab):
    with pytest.raises(guide.GrammarError, match="exceeds 50 states"):
        guide.regex("[ab]{0,8}a[ab]{0,8}", max_dfa_states=50).compile(vocab, cache=False)
    with pytest.raises(ValueError):
        guide.regex("a", time_budget_s=0)


@pytest.mark.parametrize("pattern", ["a*", "[01]*", "(0|1)*", "", "x?"])
def test_patterns_whose_states_all_accept(pattern, vocab):
    dfa = guide.regex(pattern).byte_dfa()
    for s in ["", "a", "aa", "01", "x", "b"]:
        assert dfa.matches(s.encode()) == (re.fullmatch(pattern, s) is not None), (pattern, s)
    guide.regex(pattern).compile(vocab, cache=False)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [("a+", "b+", False), ("a.*", "ab", True), ("[0-9]{3}", "\\d\\d", False), ("é|x", "[^a-z]", True), ("", "a*", True)],
)
def test_intersects(a, b, expected):
    from guide.grammars.bytedfa import intersects

    assert intersects(guide.regex(a).byte_dfa(), guide.regex(b).byte_dfa()) is expected


@pytest.mark.parametrize("pattern", [r"\x22name\x22", "abc", r"\{", r"a\.b\-c", "é中😀", r"\x7f\xe9", "(?i)abc", "a|b", "ab?"])
def test_fixed_string_patterns_take_the_chain_automaton(pattern):
    """A pattern that is one fixed string is built as a chain directly; it must be the same
    language as the general construction (and patterns that are not one string, or match
    case-insensitively, must not take that path)."""
    from guide.grammars import re_compile

    tree = re_compile.sre_parse.parse(pattern)
    literal = re_compile._literal_run(tree, tree.state.flags)
    fixed = re.fullmatch(r"(?:\\x[0-9a-f]{2}|\\[^\w]|[^\\.^$*+?{}\[\]|()])+", pattern) is not None
    assert (literal is not None) == fixed
    dfa = guide.regex(pattern).byte_dfa()
    rng = random.Random(1)
    alphabet = ["a", "b", "c", "A", "B", "C", ".", "-", "\"", "name", "{", "é", "中", "😀", "\x7f"]
    samples = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(2000)]
    if literal is not None:
        samples.append(literal.decode())
        assert dfa.n_states == len(literal) + 1
    for s in samples:
        assert dfa.matches(s.encode()) == (re.fullmatch(pattern, s) is not None), (pattern, s)


_CHAR_ONE_RE = (
    r'(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u(?:[0-9a-cA-CefEF][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2})'
    r"|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"
)


@pytest.mark.parametrize(
    "pattern",
    [f'"{_CHAR_ONE_RE}{{0,40}}"', f'"{_CHAR_ONE_RE}{{17,40}}"', f"{_CHAR_ONE_RE}{{20}}",
     f'{_CHAR_ONE_RE}{{1,20}}"', f'"{_CHAR_ONE_RE}{{20,}}"', "[a-c]{16,30}x", '"(?:ab|c){16,20}"',
     '"(?:a|ab){16,20}"', "(?:[0-9]{2}){16}", "x{16,}", "(?:é|ü){16,17}", "a{16,20}a", "aa{16,20}"],
)
def test_counted_repeat_direct_construction_equals_the_general_route(monkeypatch, pattern):
    """`P U{lo,hi} S` with U a prefix code is built as copies of U's DFA (re_compile._counted_dfa);
    the automaton is the one subset construction + minimisation gives (the same states, up to
    numbering), and the same strings match as under `re`."""
    import guide.grammars.re_compile as rc

    fast = rc.compile_regex(pattern)
    monkeypatch.setattr(rc, "_COUNTED_DIRECT", 10**9)
    slow = rc.compile_regex(pattern)
    assert fast.transitions.shape == slow.transitions.shape
    seen = {fast.initial: slow.initial}
    todo = [fast.initial]
    while todo:
        s = todo.pop()
        t = seen[s]
        assert fast.accepting[s] == slow.accepting[t]
        for c in range(256):
            x, y = int(fast.transitions[s, c]), int(slow.transitions[t, c])
            assert (x == fast.dead) == (y == slow.dead)
            if x == fast.dead:
                continue
            if x in seen:
                assert seen[x] == y
            else:
                seen[x] = y
                todo.append(x)
    rng = random.Random(0)
    alphabet = ["a", "b", "c", "x", "é", "ü", "0", "1", '"', "\\n", "\\u00e9", "\\ud83d\\ude00"]
    for _ in range(300):
        s = "".join(rng.choice(alphabet) for _ in range(rng.choice([15, 16, 17, 19, 20, 21, 30, 40, 41, 42])))
        for text in (s, '"' + s + '"', s + '"', s + "x"):
            assert fast.matches(text.encode()) == bool(re.fullmatch(pattern, text)), text


def test_counted_repeat_direct_construction_is_fast_and_capped():
    import time

    import guide.grammars.re_compile as rc

    t = time.perf_counter()
    dfa = rc.compile_regex(f'"{_CHAR_ONE_RE}{{0,1500}}"')
    assert time.perf_counter() - t < 2.0  # the general route took over 10 s from ~1000 on
    assert dfa.n_states < 21 * 1500 + 10
    with pytest.raises(guide.errors.GrammarError, match="more than 50000 automaton states"):
        rc.compile_regex(f'"{_CHAR_ONE_RE}{{0,5000}}"')
