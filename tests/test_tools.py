"""guide.tools: names come from the list, arguments validate, several calls parse, text stays possible."""

from __future__ import annotations

import json
import random

import jsonschema
import pytest

import guide
from guide.errors import GrammarError, ToolCallError, UnsupportedFeatureError
from guide.grammars.json_schema import GuideSchemaWarning
from guide.testing import random_walk, toy_vocab
from guide.tool_calls import ToolCall, Tools, detect_format

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 4}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
ADD = {
    "name": "add",  # bare form, no OpenAI wrapper
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99}, "b": {"type": "integer", "minimum": -9, "maximum": 9}},
        "required": ["a", "b"],
        "additionalProperties": False,
    },
}
GET_TIME = {"type": "function", "function": {"name": "get_time"}}  # no parameters: no arguments
TOOLS = [WEATHER, ADD, GET_TIME]
SCHEMAS = {"get_weather": WEATHER["function"]["parameters"], "add": ADD["parameters"],
           "get_time": {"type": "object", "properties": {}, "additionalProperties": False}}
# multi-byte toy tokens that straddle the envelope, the names and the arguments
EXTRA = [b'{"', b'name', b'get', b'_time', b'ad', b'add', b'sub', b'"add"', b'": "', b'", "', b'arguments', b'}}', b'<tool_call>']


@pytest.fixture(scope="module")
def vocab():
    return toy_vocab(EXTRA)


def _feed(matcher, vocab, text: str) -> None:
    """Feed `text` one byte token at a time (the toy vocabulary's first 256 ids are the bytes)."""
    for b in text.encode():
        assert matcher.advance(b), (text, bytes([b]))


def _name_position_tokens(vocab, constraint, fmt: str) -> set[bytes]:
    m = constraint.compile(vocab).matcher()
    _feed(m, vocab, '{"tool_calls": [{"name": "' if fmt == "json" else '<tool_call>\n{"name": "')
    return {vocab.tokens[t] for t in m.allowed_tokens()}


@pytest.mark.parametrize("fmt", ["json", "hermes"])
@pytest.mark.parametrize("allow_text", [True, False])
def test_name_position_allows_exactly_the_tool_name_prefixes(vocab, fmt, allow_text):
    c = guide.tools(TOOLS, format=fmt, allow_text=allow_text)
    got = _name_position_tokens(vocab, c, fmt)
    names = [n + '"' for n in SCHEMAS]
    expected = {t for t in vocab.tokens[:-1] if t and any(n.encode().startswith(t) for n in names)}
    assert got == expected
    assert b"sub" not in got and b"ad" in got and b"add" in got and b"x" not in got


@pytest.mark.model
def test_name_mask_on_the_smollm2_tokenizer(smollm2_tokenizer):
    vocab = guide.Vocabulary.from_tokenizer(smollm2_tokenizer)
    c = guide.tools(TOOLS, format="json")
    m = c.compile(vocab).matcher()
    for t in smollm2_tokenizer.encode('{"tool_calls": [{"name": "', add_special_tokens=False):
        assert m.advance(t)
    allowed = m.allowed_tokens()
    assert allowed
    for t in allowed:  # every allowed token spells the start of a listed name
        piece = vocab.tokens[t].decode()
        assert any((n + '", "arguments": {').startswith(piece) for n in SCHEMAS), piece
    for bogus in ("sub", "multiply", "weather", "time"):
        assert smollm2_tokenizer.encode(bogus, add_special_tokens=False)[0] not in allowed
    for name in SCHEMAS:
        assert smollm2_tokenizer.encode(name, add_special_tokens=False)[0] in allowed


@pytest.mark.parametrize("fmt", ["json", "hermes"])
def test_random_walks_give_calls_whose_arguments_validate(vocab, fmt):
    c = guide.tools(TOOLS, format=fmt, allow_text=False)
    compiled = c.compile(vocab)
    rng = random.Random(0)
    finished, names = 0, set()
    for _ in range(150):
        tokens, done = random_walk(compiled.matcher(), rng, max_tokens=400, stop_p=0.5)
        if not done:
            continue
        finished += 1
        calls = c.parse(vocab.decode_text(tokens))
        assert calls
        for call in calls:
            jsonschema.validate(call.arguments, SCHEMAS[call.name])
            names.add(call.name)
    assert finished >= 100
    assert names == set(SCHEMAS)


def test_text_branch_cannot_smuggle_calls(vocab):
    """With allow_text, text may not start with the envelope's first character, so every `{...`
    output is a checked call envelope."""
    c = guide.tools(TOOLS, format="json", allow_text=True)
    m = c.compile(vocab).matcher()
    _feed(m, vocab, '{"tool_calls": [{"name": "add", "arguments": {"a":')
    assert ord("x") not in m.allowed_tokens() and ord("1") in m.allowed_tokens()


@pytest.mark.parametrize("fmt", ["json", "hermes"])
def test_several_calls_are_accepted_and_parsed(vocab, fmt):
    c = guide.tools(TOOLS, format=fmt)
    calls = [('get_weather', {"city": "Oslo", "unit": "c"}), ("add", {"a": 12, "b": -3}), ("get_time", {})]
    bodies = [json.dumps({"name": n, "arguments": a}) for n, a in calls]
    if fmt == "json":
        text = '{"tool_calls": [' + ", ".join(bodies) + "]}"
    else:
        text = "\n".join(f"<tool_call>\n{b}\n</tool_call>" for b in bodies)
    m = c.compile(vocab).matcher()
    _feed(m, vocab, text)
    assert m.is_accepting()
    assert c.parse(text) == [ToolCall(n, a) for n, a in calls]


def test_max_calls_bounds_the_number_of_calls(vocab):
    c = guide.tools(TOOLS, max_calls=2, allow_text=False)
    m = c.compile(vocab).matcher()
    one = '{"name": "get_time", "arguments": {}}'
    _feed(m, vocab, '{"tool_calls": [' + one + ", " + one)
    assert {vocab.tokens[t] for t in m.allowed_tokens()} <= {b"]", b"]}"} | {b"}"}  # no third call
    assert not m.advance(ord(","))
    with pytest.raises(ValueError, match="max_calls"):
        guide.tools(TOOLS, max_calls=0)


def test_text_only_answers(vocab):
    text = "It is sunny, no tool needed."
    with_text = guide.tools(TOOLS).compile(vocab).matcher()
    _feed(with_text, vocab, text)
    assert with_text.is_accepting() and vocab.tokens.index(b"<eos>") in with_text.allowed_tokens()
    assert guide.tools(TOOLS).parse(text) == []
    strict = guide.tools(TOOLS, allow_text=False).compile(vocab).matcher()
    assert not strict.advance(ord("I"))
    assert {vocab.tokens[t][:1] for t in strict.allowed_tokens()} == {b"{"}
    with pytest.raises(ToolCallError, match="allow_text=False"):
        guide.tools(TOOLS, allow_text=False).parse(text)


def test_duplicate_names_and_bad_tool_lists():
    with pytest.raises(GrammarError, match=r"duplicate tool name 'add' at tools\[1\] and tools\[3\]"):
        guide.tools([WEATHER, ADD, GET_TIME, {"name": "add"}])
    with pytest.raises(GrammarError, match="empty"):
        guide.tools([])
    with pytest.raises(GrammarError, match=r"tools\[0\]\.function\.name"):
        guide.tools([{"type": "function", "function": {"parameters": {}}}])
    with pytest.raises(GrammarError, match="only 'function'"):
        guide.tools([{"type": "retrieval", "function": {"name": "x"}}])
    with pytest.raises(TypeError):
        guide.tools(WEATHER)
    with pytest.raises(ValueError, match="format"):
        Tools([ADD], format="xml")


def test_schema_that_does_not_compile_is_an_error_naming_the_tool():
    bad = {"name": "tag", "parameters": {"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}}
    with pytest.raises(UnsupportedFeatureError, match=r"tool 'tag' \(tools\[1\]\).*uniqueItems") as info:
        guide.tools([ADD, bad])
    assert info.value.feature == "uniqueItems"
    with pytest.raises(GrammarError, match=r"tool 'bad'"):
        guide.tools([{"name": "bad", "parameters": {"type": "object", "properties": {"x": {"type": "string", "pattern": "("}}}}])
    with pytest.warns(GuideSchemaWarning, match="tag: .*uniqueItems"):
        lenient = guide.tools([ADD, bad], strict=False)
    assert lenient.warnings


def test_parse_rejects_unconstrained_garbage():
    c = guide.tools(TOOLS)
    with pytest.raises(ToolCallError, match="not valid JSON"):
        c.parse('{"tool_calls": [{"name": "add"')
    with pytest.raises(ToolCallError, match="unknown tool 'sub'"):
        c.parse('{"tool_calls": [{"name": "sub", "arguments": {}}]}')
    with pytest.raises(ToolCallError, match="at \\$.a"):
        c.validate(ToolCall("add", {"a": "one", "b": 1}))


@pytest.mark.model
def test_format_detection_and_prompts(smollm2_tokenizer):
    class Hermes:
        chat_template = "{% for tool in tools %}<tools>{{ tool }}</tools>{% endfor %}<tool_call>"

    assert detect_format(Hermes()) == "hermes"
    assert detect_format(smollm2_tokenizer) == "json"  # SmolLM2's template has no tool convention
    assert guide.tools(TOOLS, tokenizer=smollm2_tokenizer).format == "json"
    c = guide.tools(TOOLS, tokenizer=smollm2_tokenizer)
    prompt = c.prompt(smollm2_tokenizer, "Add 2 and 3")
    assert '"name": "add"' in prompt and '{"tool_calls": [' in prompt and prompt.endswith("<|im_start|>assistant\n")




@pytest.mark.model
@pytest.mark.usefixtures("one_torch_thread")
def test_embedded_model_calls_a_listed_tool():
    model, tok = guide.load_default_model()
    c = guide.tools(TOOLS, tokenizer=tok, allow_text=False, max_calls=1)
    text = guide.generate(model, tok, c.prompt(tok, "What is 12 plus 30?"), c, chat=False, max_new_tokens=60)
    calls = c.parse(text)
    assert len(calls) == 1 and calls[0].name in SCHEMAS
    for call in calls:
        jsonschema.validate(call.arguments, SCHEMAS[call.name])


def test_hermes_prompt_uses_the_templates_tool_section():
    class HermesTokenizer:
        chat_template = "{% for t in tools %}{{ t }}{% endfor %}<tool_call>"

        def apply_chat_template(self, messages, **kwargs):
            self.seen = (messages, kwargs)
            return "PROMPT"

    tok = HermesTokenizer()
    c = guide.tools(TOOLS, tokenizer=tok)
    assert c.format == "hermes"
    assert c.prompt(tok, "hi") == "PROMPT"
    messages, kwargs = tok.seen
    assert messages == [{"role": "user", "content": "hi"}]
    assert [t["function"]["name"] for t in kwargs["tools"]] == list(SCHEMAS)
    assert kwargs["tools"][1]["function"]["parameters"] == ADD["parameters"]  # bare tools get the OpenAI wrapper
