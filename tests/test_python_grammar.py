"""The built-in Python grammar (guide/grammars/builtin/python.lark) and the CFG engine's Layout hook."""

from __future__ import annotations

import ast
import heapq
import random
import time
from pathlib import Path

import numpy as np
import pytest

import guide
from guide.errors import GrammarError
from guide.grammars._no_lexer import NoLexer
from guide.grammars.cfg import (
    PYTHON_LAYOUT,
    Grammar,
    Layout,
    build_lark,
    builtin,
    builtin_text,
    grammar,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted(
    [*(ROOT / "tests" / "monitor_project").rglob("*.py"), *(ROOT / "benchmarks" / "code_eval" / "projects").rglob("*.py")]
) + [ROOT / "tests" / "data" / "python_docs" / "constructs.py"]

SMALL = [
    "",
    "\n",
    "x = 1\n",
    "x = 1",
    "# only a comment\n",
    "def f():\n    return 1\n",
    "if a:\n    if b:\n        pass\nelse:\n    pass\n",
    "if a:\n    if b:\n        x = 1\ny = 2\n",
    "class A:\n\n    x = 1\n\n\n    def f(self):\n        pass\n",
    "for i in range(3):\n    pass\nelse:\n    pass\n",
    "try:\n    f()\nexcept E as e:\n    pass\nexcept:\n    pass\nelse:\n    pass\nfinally:\n    pass\n",
    "try:\n    pass\nfinally:\n    pass\n",
    "f(a,\n  b,\n)\n",
    "x = [\n    1,\n\n    2  # two\n]\n",
    "x = (1 +\n     2)\n",
    "x = 1 + \\\n    2\n",
    "if x: return 1\n",
    "while True: break\n",
    "@d\n\n@e\ndef f(): pass\n",
    "def f():\n    # comment\n    return 1\n",
    "def f():\n    return 1\n  # a comment at a stray indentation\n\nx = 1\n",
    "x = 1; y = 2;\n",
    "x = 1\r\ny = 2\r\n",
]


@pytest.fixture(scope="module")
def python() -> Grammar:
    return builtin("python")


@pytest.fixture(scope="module")
def vocab(smollm2_tokenizer):
    return guide.Vocabulary.from_tokenizer(smollm2_tokenizer)


@pytest.fixture(scope="module")
def compiled(python, vocab):
    return python.compile(vocab)


def _text_of(vocab, ids) -> bytes:
    return b"".join(vocab.tokens[t] for t in ids)


# ---------------------------------------------------------------------------------------------
# The grammar itself


def test_grammar_has_no_lalr_conflicts():
    # lark resolves shift/reduce conflicts silently as shifts unless strict
    build_lark(builtin_text("python"), parser="lalr", lexer=NoLexer, strict=True)


def test_levels_are_written_out():
    text = builtin_text("python")
    rules = [line for line in text.splitlines() if not line.lstrip().startswith("//")]
    assert not [line for line in rules if any(m in line for m in ("@k", "@n", "@p", "@s")) or line.startswith(("?0", "?n"))]
    assert "stmts12:" in text and "stmts13" not in text
    assert "_NL3.5: /(?:\\r?\\n[\\t ]*(?:#[^\\r\\n]*)?)*\\r?\\n {12}/" in text


def test_key_includes_the_layout():
    text = builtin_text("python")
    assert builtin("python").key != grammar(text).key
    assert builtin("python") == Grammar(text, layout=PYTHON_LAYOUT)


@pytest.mark.parametrize("text", SMALL)
def test_small_documents_parse_and_are_python(python, text):
    ast.parse(text)
    assert python.parses(text), text


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_real_documents_parse(python, path):
    text = path.read_text(encoding="utf-8")
    ast.parse(text)
    assert python.parses(text)


REJECTED = {
    "unexpected indent": "x = 1\n    y = 2\n",
    "indented first line": "    x = 1\n",
    "inconsistent dedent": "if a:\n    if b:\n        x = 1\n      y = 2\n",
    "dedent between levels": "if a:\n    x = 1\n  y = 2\n",
    "block without indent": "if a:\nx = 1\n",
    "missing colon": "if a\n    x = 1\n",
    "missing colon def": "def f()\n    return 1\n",
    "unclosed bracket": "x = (1,\n",
    "unclosed call": "f(a, b\n",
    "newline outside brackets": "x = 1 +\n2\n",
    "keyword as a name": "x = pass\n",
    "keyword as a target": "class = 1\n",
    "keyword glued to a name": "x = a ordinal\n",
    "keyword glued to a name in a call": "f(a isnt)\n",
    "elif without if": "elif a:\n    pass\n",
    "else after try": "try:\n    pass\nelse:\n    pass\n",
    "assignment to a call": "f() = 1\n",
    "assignment to a literal": "x, 1 = y\n",
    "keyword before positional": "f(a=1, b)\n",
    "default before plain": "def f(a=1, b):\n    pass\n",
    "bare star alone": "def f(*):\n    pass\n",
    "bytes with non-ASCII": "x = b'\u00e9'\n",
    "bad escape": "x = '\\x4'\n",
    "leading zeros": "x = 0777\n",
    "mixed bytes and str": "x = b'a' 'b'\n",
}


# Python, but outside the documented subset
UNSUPPORTED = {
    "block indented 8": "if a:\n        x = 1\n",
    "tab indent": "if a:\n\tx = 1\n",
    "bare name statement": "x\n",
    "walrus": "if (n := 1):\n    pass\n",
    "match": "match x:\n    case 1:\n        pass\n",
    "chained tuple assignment": "a, b = c, d = 1, 2\n",
    "comment where the statement cannot end": "x = 1 + # c\n",
}


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_outside_the_subset(python, name):
    text = UNSUPPORTED[name]
    if name != "comment where the statement cannot end":
        ast.parse(text)
    assert not python.parses(text)


@pytest.mark.parametrize("name", REJECTED)
def test_invalid_python_is_rejected(python, name):
    text = REJECTED[name]
    with pytest.raises(SyntaxError):
        ast.parse(text)
    assert not python.parses(text)


@pytest.mark.model
@pytest.mark.parametrize(
    "text, bad",
    [
        ("x = 1\n    y = 2\n", "y"),  # unexpected indent: the indentation is lexed with the newline
        ("if a:\n    if b:\n        x = 1\n      y = 2\n", "y"),  # 6 spaces: neither level 1 nor 2
        ("if a\n    x = 1\n", "\n"),  # missing colon
        ("def f(:\n", ":"),
    ],
)
def test_invalid_python_rejected_at_the_right_token(compiled, smollm2_tokenizer, vocab, text, bad):
    from test_cfg import assert_rejected_at

    ids = smollm2_tokenizer.encode(text, add_special_tokens=False)
    assert_rejected_at(compiled.matcher(), vocab, ids, text.index(bad), text)


@pytest.mark.model
def test_unclosed_bracket_cannot_end(compiled, smollm2_tokenizer, vocab):
    m = compiled.matcher()
    for t in smollm2_tokenizer.encode("x = f(1,\n      2", add_special_tokens=False):
        assert m.advance(t)
    assert not m.is_accepting()
    assert not m.advance(next(iter(vocab.eos_ids)))


@pytest.mark.model
@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_real_documents_token_by_token(python, compiled, smollm2_tokenizer, vocab, path):
    doc = path.read_text(encoding="utf-8")
    ids = smollm2_tokenizer.encode(doc, add_special_tokens=False)
    assert _text_of(vocab, ids) == doc.encode()
    m = compiled.matcher()
    bm = np.zeros((1, compiled.width), dtype=np.int32)
    for i, t in enumerate(ids):
        m.fill_bitmask(bm)
        assert (int(bm[0, t >> 5]) >> (t & 31)) & 1, (path.name, i, vocab.tokens[t])
        assert m.advance(t), (path.name, i)
    assert m.is_accepting()
    assert m.advance(next(iter(vocab.eos_ids))) and m.is_finished()


@pytest.mark.model
def test_acceptance_matches_the_oracle_on_prefixes(python, compiled, smollm2_tokenizer, vocab):
    doc = SMALL[6] + SMALL[10] + SMALL[13]
    ids = smollm2_tokenizer.encode(doc, add_special_tokens=False)
    m = compiled.matcher()
    for i, t in enumerate(ids):
        assert m.advance(t)
        prefix = _text_of(vocab, ids[: i + 1]).decode()
        assert m.is_accepting() == python.parses(prefix), prefix


# ---------------------------------------------------------------------------------------------
# Random walks: what the masks allow is Python


def _complete(compiled, stack, q, *, budget: int = 20_000) -> bytes | None:
    """A short ASCII completion of (stack, q) to an accepting state, through the masks."""
    vocab = compiled.vocab
    single = {vocab.tokens[i][0]: i for i in range(vocab.size) if len(vocab.tokens[i]) == 1 and i not in vocab.special_ids}
    single = {b: i for b, i in single.items() if 32 <= b < 127 or b == 10}
    heap = [(len(stack), 0, 0, stack, q, b"")]
    seen = {(stack, q)}
    counter = 0
    while heap and budget > 0:
        _, _, _, stack, q, path = heapq.heappop(heap)
        budget -= 1
        if compiled.end_ok(stack, q):
            return path
        mask = compiled.mask(stack, q)
        for b, t in single.items():
            if (int(mask[t >> 5]) >> (t & 31)) & 1:
                nxt = compiled.consume(stack, q, bytes([b]))
                if nxt is not None and nxt not in seen:
                    seen.add(nxt)
                    counter += 1
                    heapq.heappush(heap, (len(nxt[0]) + len(path) // 4, len(path), counter, nxt[0], nxt[1], path + bytes([b])))
    return None


@pytest.mark.model
@pytest.mark.parametrize("seed", range(12))
def test_random_walks_are_python(compiled, seed):
    rng = random.Random(seed)
    vocab = compiled.vocab
    eos = vocab.eos_ids
    m = compiled.matcher()
    tokens: list[int] = []
    for _ in range(30):
        allowed = [t for t in m.allowed_tokens() if t not in eos]
        assert allowed, _text_of(vocab, tokens)
        # mostly short ASCII tokens, so that walks reach statements rather than one long string
        short = [t for t in allowed if vocab.tokens[t].isascii() and len(vocab.tokens[t]) <= 4]
        t = rng.choice(short if short and rng.random() < 0.9 else allowed)
        assert m.advance(t)
        tokens.append(t)
    rest = _complete(compiled, m.stack, m.q)
    assert rest is not None, _text_of(vocab, tokens)
    text = (_text_of(vocab, tokens) + rest).decode("utf-8")
    assert compiled.consume(compiled.initial_stack(), compiled.lexer.initial, text.encode()) is not None
    ast.parse(text)


PY_TOY = [
    b"def", b" f", b"():", b"(", b")", b":", b"\n", b"\n    ", b"\n        ", b"\n      ", b"    ", b"  ", b"return",
    b" x", b"x", b" =", b" = ", b"1", b" +", b"if", b" if", b" else", b"or", b" or", b"ord", b"pass", b"#", b" #",
    b"'", b"'''", b'"', b"f'", b"{x}", b"[", b"]", b",", b", ", b"\n\n", b"elif", b"else:", b"try:", b"except",
    b"finally:", b"class", b" A", b"lambda", b" in", b" not", b" is", b"\\\n", b"b'", "é".encode(), b"0", b"0x",
]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_masks_are_exact_on_a_toy_vocab(python, seed):
    """Along random walks, a token is in the mask iff lexing + parsing its bytes succeeds and the
    text can then still be completed (brute force over the whole toy vocabulary)."""
    from test_cfg import check_mask_exact

    from guide.testing import toy_vocab

    vocab = toy_vocab(PY_TOY)
    c = python.compile(vocab)
    eos = next(iter(vocab.eos_ids))
    rng = random.Random(seed)
    m = c.matcher()
    for _ in range(10):
        allowed = check_mask_exact(c, m, lambda st, q: _complete(c, st, q, budget=400))
        text = [t for t in allowed if t != eos and vocab.tokens[t].isascii() and len(vocab.tokens[t]) > 1]
        if not text:
            break
        assert m.advance(rng.choice(text))


# ---------------------------------------------------------------------------------------------
# Layout validation and speed


def test_layout_names_are_checked():
    text = 'start: "a" B\nB: /b/\nWS: " "\n%ignore WS\n'
    with pytest.raises(GrammarError, match="keywords_of names 'NAME'"):
        grammar(text, layout=Layout(keywords_of="NAME"))
    with pytest.raises(GrammarError, match="not %ignore'd"):
        grammar(text, layout=Layout(bracket_ignored=("B",), line_breaks=("B",)))
    with pytest.raises(GrammarError, match="need line_breaks"):
        grammar(text, layout=Layout(bracket_ignored=("WS",)))
    with pytest.raises(TypeError):
        Grammar(text, layout="python")


def test_not_leading_and_keywords_on_a_toy_grammar():
    text = 'start: NAME ("if" NAME)?\nNAME: /[a-z]+/\nWS: " "\n%ignore WS\n'
    g = grammar(text, layout=Layout(keywords_of="NAME", not_leading=("WS",)))
    assert g.parses("a if b") and g.parses("a if ifs")
    assert not g.parses(" a")  # leading space
    assert not g.parses("if")  # a reserved keyword is no NAME
    assert not g.parses("a ifb")  # nor is the start of a NAME a keyword
    loose = grammar(text)
    assert loose.parses(" a") and loose.parses("if")


@pytest.mark.model
def test_compile_and_mask_times(python, smollm2_tokenizer, vocab, capsys):
    start = time.perf_counter()
    g = Grammar(builtin_text("python"), layout=PYTHON_LAYOUT)
    grammar_s = time.perf_counter() - start
    start = time.perf_counter()
    c = g.compile(vocab, cache=False)
    compile_s = time.perf_counter() - start
    doc = DOCS[-1].read_text(encoding="utf-8")
    ids = smollm2_tokenizer.encode(doc, add_special_tokens=False)
    bm = np.zeros((1, c.width), dtype=np.int32)
    times = []
    for _ in range(2):  # the second pass is warm
        times.clear()
        m = c.matcher()
        for t in ids:
            s = time.perf_counter()
            m.fill_bitmask(bm)
            times.append(time.perf_counter() - s)
            assert m.advance(t)
    p50 = sorted(times)[len(times) // 2]
    with capsys.disabled():
        print(f"\npython grammar: lark + lexer {grammar_s:.2f} s, vocabulary compile {compile_s:.2f} s, warm mask p50 {p50 * 1e6:.0f} us")
    assert grammar_s < 10 and compile_s < 10  # generous: shared CI machines
    assert p50 < 300e-6
