"""Monitors (monitor-guided decoding with jedi): masks, state machine, composition, bad input."""

from __future__ import annotations

import builtins
import keyword
import re
from pathlib import Path

import jedi
import numpy as np
import pytest

import guide
from guide.errors import GuideError, MissingDependencyError
from guide.monitors import call_arity, member_access, monitors, name_resolution
from guide.monitors.base import MonitorCompiled, _State, step
from guide.monitors.jedi_backend import code_context
from guide.monitors.vocab_index import is_ident_byte, vocab_index
from guide.testing import toy_vocab
from guide.vocab import Vocabulary

ROOT = Path(__file__).parent / "monitor_project"
HEADER = "from bank.factory import open_account\nacct = open_account('ann')\n"
ACCOUNT_OWN = {"owner", "qlx_total", "frobnicate_widget", "set_limits", "audit"}


@pytest.fixture(scope="module")
def vocab(smollm2_tokenizer) -> Vocabulary:
    return Vocabulary.from_tokenizer(smollm2_tokenizer)


def _jedi_members(code: str) -> set[str]:
    """The member list computed here, directly with jedi, independently of the monitor."""
    lines = code.split("\n")
    script = jedi.Script(code=code, path=str(ROOT / "__test_probe__.py"), project=jedi.Project(str(ROOT)))
    return {c.name for c in script.complete(len(lines), len(lines[-1])) if c.type != "keyword"}


def _brute_force_allowed(vocab: Vocabulary, names: set[str]) -> set[int]:
    """Token ids a member-name mask must allow, by a loop over the whole vocabulary."""
    out = set()
    encoded = [n.encode() for n in names]
    for i, tok in enumerate(vocab.tokens):
        if not tok or i in vocab.special_ids:
            continue
        for name in encoded:
            if name.startswith(tok) or (tok.startswith(name) and not is_ident_byte(tok[len(name)])):
                out.add(i)
                break
    return out


def _advance_text(matcher, tok, text: str) -> bool:
    return all(matcher.advance(t) for t in tok.encode(text, add_special_tokens=False))


# -- member access ---------------------------------------------------------------------------


def test_mask_after_acct_dot_is_exactly_the_member_prefixes(vocab):
    code = HEADER + "acct."
    members = _jedi_members(code)
    assert ACCOUNT_OWN <= members  # the hand list of Account's own members
    matcher = member_access(ROOT, code).compile(vocab).matcher()
    allowed = set(matcher.allowed_tokens())
    assert allowed == _brute_force_allowed(vocab, members)
    assert allowed  # and EOS is not among them: a name must follow the dot
    assert not allowed & vocab.eos_ids
    assert matcher.allowed_names() == frozenset(members)


def test_invented_member_is_blocked_and_real_one_completes_over_several_tokens(vocab, smollm2_tokenizer):
    tok = smollm2_tokenizer
    compiled = member_access(ROOT, HEADER + "acct.").compile(vocab)
    pieces = tok.encode("frobnicate_widget(3)", add_special_tokens=False)
    assert len(pieces) >= 4  # the name really spans several tokens
    matcher = compiled.matcher()
    for i, t in enumerate(pieces):
        assert matcher.advance(t), vocab.tokens[t]
        if vocab.tokens[t].startswith(b"("):
            assert matcher.state is None  # released once the name is complete
    assert matcher.generated == b"frobnicate_widget(3)"
    bad = compiled.matcher()
    assert not _advance_text(bad, tok, "frobnicate_gadget(3)")
    assert bytes(bad.generated) == b"frobnicate_"  # accepted up to the invented part
    assert not compiled.matcher().advance(tok.encode("withdraw", add_special_tokens=False)[0])
    # a name followed by a character that continues it is blocked: it would spell another name
    glued = [i for i, t in enumerate(vocab.tokens) if t == b"ownerx"]
    for i in glued:
        assert not compiled.matcher().advance(i)


def test_multi_token_member_then_chained_trigger(vocab, smollm2_tokenizer):
    """After `open_account('x').` the name completes, `(...)` releases, a later `.` triggers again."""
    matcher = monitors(ROOT, HEADER, kinds=("member",)).compile(vocab).matcher()
    assert _advance_text(matcher, smollm2_tokenizer, "acct.set_limits(1, 2)\nacct.")
    assert matcher.allowed_names() == frozenset(_jedi_members(HEADER + "acct.set_limits(1, 2)\nacct."))
    assert matcher.triggers == 2


def test_unknown_type_allows_everything_and_says_so(vocab):
    compiled = member_access(ROOT, "thing = mystery()\nthing.").compile(vocab)
    matcher = compiled.matcher()
    assert matcher.allowed_tokens() == _all_ordinary_and_eos(vocab)
    assert len(matcher.diagnostics) == 1 and "cannot infer" in matcher.diagnostics[0]


def _all_ordinary_and_eos(vocab: Vocabulary) -> list[int]:
    return sorted(i for i, t in enumerate(vocab.tokens) if (t and i not in vocab.special_ids) or i in vocab.eos_ids)


def test_no_trigger_means_every_token_and_identical_state(vocab, smollm2_tokenizer):
    matcher = monitors(ROOT, HEADER, kinds=("member", "call", "name")).compile(vocab).matcher()
    everything = _all_ordinary_and_eos(vocab)
    for t in smollm2_tokenizer.encode("if ready:\n    pass\nelse:\n    raise\n", add_special_tokens=False):
        assert matcher.allowed_tokens() == everything
        assert matcher.advance(t)


@pytest.mark.parametrize(
    "code",
    [
        HEADER + "note = 'see acct.",  # inside a string
        HEADER + "# call acct.",  # inside a comment
        HEADER + "x = 1.",  # a float literal
        HEADER + 'doc = """\nacct.',  # inside a multi-line string
    ],
)
def test_dots_outside_code_do_not_trigger(vocab, code):
    matcher = member_access(ROOT, code).compile(vocab).matcher()
    assert matcher.allowed_tokens() == _all_ordinary_and_eos(vocab)
    assert matcher.diagnostics == []


def test_prefix_that_does_not_parse_still_works(vocab):
    code = "def broken(:\n    pass\n" + HEADER + "items = [acct."
    assert code_context(code) == "code"
    matcher = member_access(ROOT, code).compile(vocab).matcher()
    assert ACCOUNT_OWN <= matcher.allowed_names()


def test_class_still_being_written_is_not_constrained(vocab):
    code = "class Draft:\n    def __init__(self):\n        self.zz = 1\n\n    def go(self):\n        return self."
    matcher = member_access(ROOT, code).compile(vocab).matcher()
    assert matcher.allowed_names() is None  # methods defined below the cursor would be blocked
    assert "still being defined" in matcher.diagnostics[0]


def test_module_members(vocab):
    matcher = member_access(ROOT, "import bank.models as bm\nbm.").compile(vocab).matcher()
    assert {"Account", "Ledger"} <= matcher.allowed_names()
    assert "open_account" not in matcher.allowed_names()


# -- call arity ------------------------------------------------------------------------------


def _token(vocab: Vocabulary, text: bytes) -> int:
    return vocab.tokens.index(text)  # every text used below is one token of SmolLM2's vocabulary


def test_two_parameter_call_cannot_take_a_third_positional(vocab):
    compiled = call_arity(ROOT, HEADER + "acct.set_limits(1, 2,").compile(vocab)
    matcher = compiled.matcher()
    allowed = set(matcher.allowed_tokens())
    for third in (b"3", b" x", b" True", b" note"):
        assert _token(vocab, third) not in allowed, third
    assert matcher.advance(_token(vocab, b" ")) and not matcher.advance(_token(vocab, b"3"))
    assert _token(vocab, b")") in allowed and _token(vocab, b" )") in allowed
    assert _token(vocab, b" **") in allowed or _token(vocab, b"**") in allowed
    # no keyword is left either (both parameters were given): only `)`, `**` and blanks remain
    texts = {vocab.tokens[i].strip() for i in allowed}
    assert all(t == b"" or t.startswith((b")", b"**")) for t in texts)


def test_call_keyword_names_and_premature_close(vocab):
    open_call = call_arity(ROOT, HEADER + "acct.set_limits(").compile(vocab).matcher()
    allowed = set(open_call.allowed_tokens())
    assert _token(vocab, b")") not in allowed  # both parameters are required
    assert _token(vocab, b"1") in allowed
    after_one = call_arity(ROOT, HEADER + "acct.set_limits(1,").compile(vocab).matcher()
    assert {_token(vocab, b" "), _token(vocab, b" x")} <= set(after_one.allowed_tokens())
    kw_only = call_arity(ROOT, HEADER + "acct.audit(").compile(vocab).matcher()
    names = kw_only.allowed_names()
    assert names == {"strict=", "strict =", "verbose=", "verbose ="}
    allowed = set(kw_only.allowed_tokens())
    assert _token(vocab, b"1") not in allowed and _token(vocab, b" True") not in allowed
    assert _token(vocab, b")") not in allowed  # `strict` is required
    assert _token(vocab, b"str") in allowed
    assert all(kw_only.advance(t) for t in [_token(vocab, b"str"), _token(vocab, b"ict"), _token(vocab, b"=")])
    assert kw_only.state is None  # `strict=` done: the value is free


def test_premature_close_after_an_argument_is_blocked(vocab, smollm2_tokenizer):
    """`set_limits(low, high)`: after `set_limits(1` the call cannot close; after `1, 2` it can."""
    compiled = call_arity(ROOT, HEADER + "acct.set_limits(").compile(vocab)
    matcher = compiled.matcher()
    assert matcher.advance(_token(vocab, b"1"))
    allowed = set(matcher.allowed_tokens())
    assert _token(vocab, b")") not in allowed and _token(vocab, b"))") not in allowed
    assert {_token(vocab, b","), _token(vocab, b"0"), _token(vocab, b"("), _token(vocab, b" +")} <= allowed
    assert not matcher.advance(_token(vocab, b")"))
    assert _advance_text(matcher, smollm2_tokenizer, ", 2)")
    # a bracket or a string inside the argument lifts the guard until it is closed
    nested = compiled.matcher()
    assert _advance_text(nested, smollm2_tokenizer, 'len("a)") + max(1, 2)')
    assert _token(vocab, b")") not in set(nested.allowed_tokens())
    # a token that closes the string argument and then the call is blocked too
    quoted = compiled.matcher()
    assert quoted.advance(_token(vocab, b'"')) and _advance_text(quoted, smollm2_tokenizer, "low")
    assert _token(vocab, b'")') not in set(quoted.allowed_tokens()) and not quoted.advance(_token(vocab, b'")'))
    assert _token(vocab, b'",') in set(quoted.allowed_tokens())
    # one required parameter left: the argument being typed may be it, so `)` may follow
    one_left = call_arity(ROOT, HEADER + "acct.frobnicate_widget(").compile(vocab).matcher()
    assert _advance_text(one_left, smollm2_tokenizer, "5)")


def test_optional_parameter_allows_close(vocab):
    matcher = call_arity(ROOT, HEADER + "acct.frobnicate_widget(5,").compile(vocab).matcher()
    allowed = set(matcher.allowed_tokens())
    assert _token(vocab, b" note") in allowed or _token(vocab, b"note") in allowed
    assert _token(vocab, b" x") in allowed  # `note` may still come positionally


def test_nested_brackets_inside_a_call_are_not_argument_slots(vocab):
    matcher = call_arity(ROOT, HEADER + "acct.audit(strict=[1,").compile(vocab).matcher()
    assert matcher.allowed_tokens() == _all_ordinary_and_eos(vocab)


def test_unknown_callee_is_not_constrained(vocab):
    matcher = call_arity(ROOT, "mystery(1, 2,").compile(vocab).matcher()
    assert matcher.allowed_tokens() == _all_ordinary_and_eos(vocab)


# -- name resolution -------------------------------------------------------------------------


def test_name_resolution_after_assignment(vocab, smollm2_tokenizer):
    compiled = name_resolution(ROOT, HEADER + "y =").compile(vocab)
    matcher = compiled.matcher()
    names = matcher.allowed_names()
    assert {"acct", "open_account", "len", "None", "lambda"} <= names
    allowed = set(matcher.allowed_tokens())
    for ok in (b" open", b" len", b" lambda", b" ", b' "', b" ("):
        assert _token(vocab, ok) in allowed, ok
    assert _token(vocab, b" balance") not in allowed and _token(vocab, b" x") not in allowed
    assert _advance_text(matcher, smollm2_tokenizer, " open_account('bo')")
    # a string prefix followed by a quote is not a name
    assert _advance_text(compiled.matcher(), smollm2_tokenizer, ' f"x"')


# -- the state machine on a toy vocabulary (ALGORITHMS.md 2.8 test 1 and 2) ------------------


def test_maskgen_and_update_on_a_synthetic_vocabulary():
    words = [b"set", b"set_", b"_p", b"set_port(", b"set_portx", b"bu", b"build)", b"xyz", b"s", b"port("]
    vocab = toy_vocab(words)
    compiled = MonitorCompiled.__new__(MonitorCompiled)
    compiled.vocab, compiled.index = vocab, vocab_index(vocab)
    compiled._masks, compiled._lock = {}, __import__("threading").Lock()
    state = _State(frozenset({b"set_host", b"set_port", b"build"}), False, None)
    allowed, _ = compiled.mask(state)
    got = {vocab.tokens[i] for i in np.flatnonzero(allowed)}
    assert got == {b"set", b"set_", b"s", b"set_port(", b"bu", b"build)", b"b"}
    after = step(state, b"set_")
    assert after == _State(frozenset({b"host", b"port"}), False, None)
    assert step(after, b"port(") is None  # released


def test_break_characters():
    for ch in ".(),: \n=":
        assert not is_ident_byte(ord(ch)), ch
    for ch in "aZ09_":
        assert is_ident_byte(ord(ch)), ch


# -- composition, fork, rollback -------------------------------------------------------------


def test_composes_with_a_regex(vocab, smollm2_tokenizer):
    combined = guide.regex(r"[a-z_]+\(\)\n") & member_access(ROOT, HEADER + "acct.")
    matcher = combined.compile(vocab).matcher()
    allowed = {vocab.tokens[i] for i in matcher.allowed_tokens()}
    assert b"fro" in allowed and b"_" in allowed
    assert b"owner" in allowed and b"Acc" not in allowed and b"xyz" not in allowed
    assert _advance_text(matcher, smollm2_tokenizer, "set_limits()\n")
    assert matcher.is_accepting()


def test_fork_and_rollback(vocab, smollm2_tokenizer):
    matcher = member_access(ROOT, HEADER + "acct.").compile(vocab).matcher()
    first = set(matcher.allowed_tokens())
    assert _advance_text(matcher, smollm2_tokenizer, "frob")
    other = matcher.fork()
    matcher.rollback(len(smollm2_tokenizer.encode("frob", add_special_tokens=False)))
    assert set(matcher.allowed_tokens()) == first
    assert other.allowed_names() == {"nicate_widget"}


# -- bad input -------------------------------------------------------------------------------


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(GuideError, match="does not exist"):
        member_access(tmp_path / "nope", "x.")
    with pytest.raises(GuideError, match="not inside the project root"):
        member_access(ROOT, "x.", path="../elsewhere.py")


def test_missing_jedi_names_the_code_extra(monkeypatch):
    real_import = builtins.__import__

    def no_jedi(name, *args, **kwargs):
        if name == "jedi" or name.startswith("jedi."):
            raise ImportError("No module named 'jedi'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jedi)
    with pytest.raises(MissingDependencyError, match=re.escape("guide-decoding[code]")):
        member_access(ROOT, "x.")


def test_the_analysis_is_cached_per_trigger(vocab):
    spec = member_access(ROOT, HEADER + "acct.")
    compiled = spec.compile(vocab)
    before = compiled.backend.queries
    for _ in range(3):
        compiled.matcher().allowed_tokens()
    assert compiled.backend.queries - before <= 1
    assert not keyword.iskeyword("acct")
