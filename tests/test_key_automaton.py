"""The excluded-keys automaton built from the trie of names must accept exactly what the regex
`_key_excluding` writes for the same names (the grammar keeps the regex as its text)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from guide.errors import GrammarError
from guide.grammars.bytedfa import ByteDFA
from guide.grammars.json_schema import _key_excluding
from guide.grammars.key_automaton import excluded_keys_dfa
from guide.grammars.re_compile import _compile_regex, compile_regex


def _equivalent(a: ByteDFA, b: ByteDFA) -> str | None:
    """None when both accept the same byte strings, else a shortest-found witness (repr)."""
    start = (a.initial, b.initial)
    seen = {start: b""}
    queue = [start]
    while queue:
        x, y = queue.pop(0)
        path = seen[(x, y)]
        if (x != a.dead and a.accepting[x]) != (y != b.dead and b.accepting[y]):
            return repr(path)
        if x == a.dead and y == b.dead:
            continue
        pairs: dict[tuple[int, int], int] = {}
        for byte, pair in enumerate(zip(a.transitions[x].tolist(), b.transitions[y].tolist(), strict=True)):
            pairs.setdefault(pair, byte)
        for pair, byte in pairs.items():
            if pair not in seen:
                seen[pair] = path + bytes([byte])
                queue.append(pair)
    return None


NAME_SETS = [
    {"name", "age", "email"},
    {"a", "ab", "abc", ""},  # nested names, the empty name
    {"é", "éa", "日本", "ü", "x\u0301"},  # multi-byte characters sharing lead bytes
    {'x"y', "t\\u", "\n", "/", "\x01", "a\tb", "\x7f"},  # names JSON spells with escapes
    {"id"},
    {"0", "00", "1a", "A", "a"},  # hex-like characters (escapes in either case)
]


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("names", NAME_SETS, ids=range(len(NAME_SETS)))
def test_same_language_as_the_regex(names, exact):
    regex = _key_excluding(names, raw=not exact)
    ref = _compile_regex(regex, 100_000, 50_000, 60.0)  # the parse-and-determinise route
    built = excluded_keys_dfa(names, exact=exact, max_states=50_000)
    assert _equivalent(ref, built) is None
    assert compile_regex(regex) is not ref  # registered: compile_regex takes the builder


@pytest.mark.parametrize("names", [{"a\U0001f600", "b"}, {"a\ud800", "b", "\udc00"}], ids=["non-BMP", "lone surrogates"])
def test_names_outside_the_bmp_take_the_raw_form(names):
    """Names with characters outside the BMP or lone surrogates (which UTF-8 cannot spell, so
    no key reaches them) keep the raw form."""
    with pytest.raises(ValueError):
        excluded_keys_dfa(names, exact=True, max_states=1000)
    regex = _key_excluding(names)  # falls back to the raw form itself
    built = excluded_keys_dfa(names, exact=False, max_states=1000)
    assert _equivalent(_compile_regex(regex, 100_000, 50_000, 60.0), built) is None
    assert compile_regex(regex) is built or _equivalent(compile_regex(regex), built) is None
    assert not built.matches(b'"b"') and built.matches(b'"bb"') and built.matches(b'"a"')
    if "a\ud800" in names:  # written as JSON must write it: escaped
        assert not built.matches(b'"a\\ud800"') and built.matches(b'"a\\ud800x"')


@pytest.mark.parametrize("exact", [True, False])
def test_random_names_and_spellings(exact):
    """Random name sets; random keys spelled raw or escaped are accepted exactly when (exact)
    they decode to no listed name, or (raw) as the regex route says."""
    rng = random.Random(7)
    alphabet = "ab\u00e9\u65e5\"\\/\n"
    for _ in range(12):
        names = {"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4))) for _ in range(rng.randint(1, 6))}
        built = excluded_keys_dfa(names, exact=exact, max_states=50_000)
        ref = _compile_regex(_key_excluding(names, raw=not exact), 100_000, 50_000, 60.0)
        assert _equivalent(ref, built) is None
        for _ in range(200):
            key = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 5)))
            spelled = "".join(
                rng.choice([json.dumps(ch, ensure_ascii=False)[1:-1], f"\\u{ord(ch):04X}", f"\\u{ord(ch):04x}"])
                for ch in key
            )
            data = f'"{spelled}"'.encode()
            assert built.matches(data) == ref.matches(data)
            if exact:
                assert built.matches(data) == (json.loads(data) not in names)


def test_state_cap():
    names = {f"name{i:04d}" for i in range(400)}
    with pytest.raises(GrammarError, match="exceeds 100 states"):
        excluded_keys_dfa(names, exact=True, max_states=100)


@pytest.mark.parametrize("exact", [True, False])
def test_every_state_reachable_and_live(exact):
    """A ByteDFA is trimmed: no state the lexer would carry as alive while it cannot accept."""
    dfa = excluded_keys_dfa({"abc", "é", 'q"'}, exact=exact, max_states=1000)
    n = dfa.n_states
    edges = {(q, int(t)) for q in range(n) for t in np.unique(dfa.transitions[q]).tolist() if t != n}
    seen, stack = {dfa.initial}, [dfa.initial]
    while stack:
        q = stack.pop()
        for a, b in edges:
            if a == q and b not in seen:
                seen.add(b)
                stack.append(b)
    live = set(np.flatnonzero(dfa.accepting).tolist())
    grew = True
    while grew:
        grew = False
        for a, b in edges:
            if b in live and a not in live:
                live.add(a)
                grew = True
    assert len(seen) == n and len(live) == n


def test_schema_lexer_takes_the_builder(monkeypatch):
    """The grammar's terminal keeps the regex text; the lexer builds its automaton from the trie
    (the regex is never parsed or determinised)."""
    from guide.grammars import re_compile
    from guide.grammars.cfg import Grammar, clear_build_memo
    from guide.grammars.json_schema import _lark_regex, schema_to_lark

    schema = {"type": "object", "properties": {"alpha": {"type": "integer"}, "beta": {"type": "boolean"}},
              "additionalProperties": {"type": "string"}}
    text = schema_to_lark(schema).lark_text
    spelled = f"/{_lark_regex(_key_excluding({'alpha', 'beta'}, raw=True))}/"
    assert spelled in text
    compiled: list[str] = []
    real = re_compile._compile_regex

    def spy(pattern, *args):
        compiled.append(pattern)
        return real(pattern, *args)

    monkeypatch.setattr(re_compile, "_compile_regex", spy)
    clear_build_memo()
    g = Grammar(text)
    (term,) = [t for t in g._terminals if t.pattern.raw == spelled]
    assert compiled and term.pattern.to_regexp() not in compiled
    assert g.parses('{"alpha":1,"gamma":"x"}') and not g.parses('{"alpha":1,"beta":"x"}')
