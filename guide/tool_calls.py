"""`guide.tools`: tool calling under a finite-state guide (ToolDec-style).

The model either answers in plain text or emits one or more tool calls. The calls are one lark
grammar: the tool name is a literal alternation of the known names (a name outside the list has
no path through the automaton), and each name is followed by that tool's own JSON Schema grammar
for the arguments (`schema_to_lark`, rules namespaced per tool). Text answers are the second
branch of a `Union`, so a turn is either text or calls, never calls the model cannot parse.

Two envelopes (`format`):

- ``"json"`` (the default, for templates without a tool convention, e.g. the embedded SmolLM2):
  ``{"tool_calls": [{"name": "NAME", "arguments": {...}}, ...]}``; a text answer may not begin
  with ``{``.
- ``"hermes"`` (templates that use ``<tool_call>``, e.g. Qwen2.5, Hermes): one block per call,
  ``<tool_call>\\n{"name": "NAME", "arguments": {...}}\\n</tool_call>``, blocks separated by
  ``\\n``; a text answer may not begin with ``<``.

``format="auto"`` picks ``"hermes"`` when ``tokenizer.chat_template`` mentions ``<tool_call>``
and ``"json"`` otherwise.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .constraint import Compiled, Constraint, Union
from .errors import GrammarError, ToolCallError, UnsupportedFeatureError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from .vocab import Vocabulary

ToolFormat = Literal["auto", "json", "hermes"]

_ARG_WS = " ?"  # one optional space around `,` `:` inside arguments: bounded, and the layout models know
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HERMES_OPEN = "<tool_call>\n"
_HERMES_CLOSE = "\n</tool_call>"
_JSON_OPEN = '{"tool_calls": ['
_JSON_CLOSE = "]}"


@dataclass(frozen=True)
class ToolCall:
    """One parsed call: the tool's name and its arguments (already validated by the grammar)."""

    name: str
    arguments: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        """The call as an OpenAI-style `tool_calls` entry (arguments as JSON text)."""
        return {"type": "function", "function": {"name": self.name, "arguments": json.dumps(self.arguments)}}


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]


def _normalise(tools: object) -> tuple[ToolSpec, ...]:
    """Accept OpenAI-style `{"type": "function", "function": {...}}` entries or bare `{name, parameters}`."""
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise TypeError("`tools` has to be a list of tool schemas (OpenAI style or {'name', 'parameters'})")
    if not tools:
        raise GrammarError("`tools` is empty: give at least one tool")
    specs: list[ToolSpec] = []
    seen: dict[str, int] = {}
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, Mapping):
            raise GrammarError(f"{where} is a {type(tool).__name__}, not an object")
        if "function" in tool:
            if tool.get("type", "function") != "function":
                raise GrammarError(f"{where}.type is {tool.get('type')!r}; only 'function' tools exist")
            fn = tool["function"]
            where += ".function"
            if not isinstance(fn, Mapping):
                raise GrammarError(f"{where} is a {type(fn).__name__}, not an object")
        else:
            fn = tool
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise GrammarError(f"{where}.name has to be a non-empty string, but is {name!r}")
        if name in seen:
            raise GrammarError(f"duplicate tool name {name!r} at tools[{seen[name]}] and tools[{i}]")
        seen[name] = i
        params = fn.get("parameters", {"type": "object", "properties": {}, "additionalProperties": False})
        if not isinstance(params, (Mapping, bool)):
            raise GrammarError(f"{where}.parameters has to be a JSON Schema object, not {type(params).__name__}")
        desc = fn.get("description", "")
        specs.append(ToolSpec(name, desc if isinstance(desc, str) else "", json.loads(json.dumps(params))))
    return tuple(specs)


def _namespaced(lark_text: str, prefix: str, terminals: dict[str, str]) -> tuple[str, list[str]]:
    """Rename a schema grammar's rules to `prefix*`; terminals are shared by pattern across tools."""
    rules: list[tuple[str, str]] = []
    rename: dict[str, str] = {}
    for line in lark_text.splitlines():
        if not line.strip():
            continue
        name, _, body = line.partition(": ")
        if name[:1].isupper():  # a terminal: `T3: /regex/`
            rename[name] = terminals.setdefault(body, f"TT{len(terminals)}")
        else:
            rules.append((name, body))
            rename[name] = prefix + name
    out = [f"{rename[name]}: {_NAME.sub(lambda m: rename[m.group()], body)}" for name, body in rules]
    return rename["start"], out


def _lit_term(text: str) -> str:
    from .grammars.json_schema import _lark_regex, _lit

    return f"/{_lark_regex(_lit(text))}/"


def _calls_grammar(specs: tuple[ToolSpec, ...], fmt: str, strict: bool, max_calls: int | None) -> tuple[str, list[str]]:
    """The calls grammar, and (lenient mode) the ignored keywords as `tool: pointer: keyword` lines."""
    from .grammars.json_schema import schema_to_lark

    terminals: dict[str, str] = {}
    rules: list[str] = []
    bodies: list[str] = []
    ignored: list[str] = []
    for i, spec in enumerate(specs):
        try:
            grammar = schema_to_lark(spec.parameters, strict=strict, whitespace=_ARG_WS)
        except UnsupportedFeatureError as exc:
            raise UnsupportedFeatureError(
                f"tool {spec.name!r} (tools[{i}]) parameters: {exc}", feature=exc.feature, where=exc.where
            ) from exc
        except GrammarError as exc:
            raise GrammarError(f"tool {spec.name!r} (tools[{i}]) parameters: {exc}") from exc
        ignored += [f"{spec.name}: {ptr}: {kw}: {msg}" for ptr, kw, msg in grammar.warnings]
        start, lines = _namespaced(grammar.lark_text, f"t{i}_", terminals)
        rules.extend(lines)
        head = terminals.setdefault(_lit_term(f'{{"name": {json.dumps(spec.name)}, "arguments": '), f"TT{len(terminals)}")
        end = terminals.setdefault(_lit_term("}"), f"TT{len(terminals)}")
        bodies.append(f"{head} {start} {end}")
    more = "*" if max_calls is None else f" ~ 0..{max_calls - 1}"
    if fmt == "hermes":
        top = [f"start: call (CALL_SEP call){more}", "call: CALL_OPEN body CALL_CLOSE"]
        fixed = {"CALL_OPEN": _HERMES_OPEN, "CALL_CLOSE": _HERMES_CLOSE, "CALL_SEP": "\n"}
    else:
        top = [f"start: CALL_OPEN body (CALL_SEP body){more} CALL_CLOSE"]
        fixed = {"CALL_OPEN": _JSON_OPEN, "CALL_CLOSE": _JSON_CLOSE, "CALL_SEP": ", "}
    lines = [*top, "body: " + " | ".join(bodies), *rules]
    lines += [f"{name}: {body}" for body, name in terminals.items()]
    lines += [f"{name}: {_lit_term(text)}" for name, text in fixed.items()]
    return "\n".join(lines) + "\n", ignored


def detect_format(tokenizer: PreTrainedTokenizerBase | None) -> Literal["json", "hermes"]:
    """"hermes" when the tokenizer's chat template writes `<tool_call>` blocks, else "json"."""
    template = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    return "hermes" if isinstance(template, str) and "<tool_call>" in template else "json"


class Tools(Constraint):
    """Plain text (when `allow_text`) or tool calls whose names and arguments follow `tools`.

    Example:
        >>> t = Tools([{"type": "function", "function": {"name": "add", "parameters": {
        ...     "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}])
        >>> t.parse('{"tool_calls": [{"name": "add", "arguments": {"a": 2}}]}')
        [ToolCall(name='add', arguments={'a': 2})]
    """

    def __init__(
        self, tools: Sequence[Mapping[str, Any]], *, allow_text: bool = True, format: Literal["json", "hermes"] = "json",
        strict: bool = True, max_calls: int | None = None,
    ) -> None:
        if format not in ("json", "hermes"):
            raise ValueError(f"`format` has to be 'json' or 'hermes', but is {format!r}")
        if max_calls is not None and (not isinstance(max_calls, int) or max_calls < 1):
            raise ValueError(f"`max_calls` has to be None or an int >= 1, but is {max_calls!r}")
        self.max_calls = max_calls
        self.specs = _normalise(tools)
        self.allow_text = bool(allow_text)
        self.format = format
        self.strict = strict
        self.lark_text, self.warnings = _calls_grammar(self.specs, format, strict, max_calls)
        if self.warnings:
            from .grammars.json_schema import GuideSchemaWarning

            lines = "\n".join(f"  {w}" for w in self.warnings)
            warnings.warn(f"tools ignored {len(self.warnings)} keyword(s) it cannot enforce:\n{lines}", GuideSchemaWarning, stacklevel=3)
        from .grammars.cfg import Grammar

        self.calls = Grammar(self.lark_text)
        # the first character of a calls envelope is exactly what a text answer may not start with
        first = "<" if format == "hermes" else "{"
        self.text = None
        if allow_text:
            from .grammars.regex import regex

            self.text = regex(rf"[^{re.escape(first)}][\s\S]*")
        self._key = "tools:" + json.dumps(
            [[s.name, s.parameters] for s in self.specs] + [self.allow_text, format, strict, max_calls], separators=(",", ":")
        )

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def key(self) -> str:
        return self._key

    def _compile(self, vocab: Vocabulary) -> Compiled:
        if self.text is None:
            return self.calls.compile(vocab)
        return Union((self.calls, self.text)).compile(vocab)

    def parse(self, text: str) -> list[ToolCall]:
        """The calls in `text` ([] for a text answer).

        Raises:
            ToolCallError: `text` opens a calls envelope but is not a complete, valid one (only
                unconstrained output can get here), or names an unknown tool.
        """
        calls: list[Any]
        if self.format == "hermes":
            if not text.startswith("<"):
                return self._text_answer(text)
            calls = []
            for block in re.split(r"\n(?=<tool_call>)", text.strip("\n")):
                inner = block.removeprefix("<tool_call>").removesuffix("</tool_call>")
                if len(inner) == len(block) - len("<tool_call></tool_call>"):
                    calls.append(_loads(inner.strip(), "a <tool_call> block"))
                else:
                    raise ToolCallError(f"not a <tool_call>...</tool_call> block: {block[:80]!r}")
        else:
            if not text.startswith("{"):
                return self._text_answer(text)
            doc = _loads(text, "the tool-call envelope")
            if not isinstance(doc, dict) or set(doc) != {"tool_calls"} or not isinstance(doc["tool_calls"], list):
                raise ToolCallError(f'the envelope has to be {{"tool_calls": [...]}}, got {text[:80]!r}')
            calls = doc["tool_calls"]
        return [self._call(c, i) for i, c in enumerate(calls)]

    def _text_answer(self, text: str) -> list[ToolCall]:
        if not self.allow_text:
            raise ToolCallError(f"a text answer, but allow_text=False: {text[:80]!r}")
        return []

    def _call(self, call: object, i: int) -> ToolCall:
        if not isinstance(call, dict) or set(call) != {"name", "arguments"}:
            raise ToolCallError(f'call {i} has to be {{"name": ..., "arguments": {{...}}}}, got {call!r:.80}')
        name, args = call["name"], call["arguments"]
        if name not in self.names:
            raise ToolCallError(f"call {i} names unknown tool {name!r}; the tools are {self.names}")
        if not isinstance(args, dict):
            raise ToolCallError(f"call {i} ({name}): arguments have to be an object, got {args!r:.80}")
        return ToolCall(name, args)

    def validate(self, call: ToolCall) -> None:
        """Check `call.arguments` against its tool's JSON Schema with `jsonschema` (unconstrained output)."""
        try:
            import jsonschema
        except ImportError as exc:  # pragma: no cover - jsonschema ships with the dev extra
            from .errors import MissingDependencyError

            raise MissingDependencyError("Tools.validate needs jsonschema: pip install jsonschema") from exc
        schema = next(s.parameters for s in self.specs if s.name == call.name)
        try:
            jsonschema.validate(call.arguments, schema)
        except jsonschema.ValidationError as exc:
            raise ToolCallError(f"call to {call.name!r}: {exc.message} at {exc.json_path}") from exc

    def system_prompt(self) -> str:
        """Instructions listing the tools and the envelope, for templates without a tool convention.

        Flat object schemas are listed briefly (`{"city": "string", "unit": "\"c\" | \"f\" (optional)"}`):
        short prompts suit small models, and the grammar enforces the full schema anyway.
        """
        listing = "\n".join(
            json.dumps({"name": s.name, "description": s.description, "arguments": _brief(s.parameters)}) for s in self.specs
        )
        if self.format == "hermes":
            how = '<tool_call>\n{"name": <tool name>, "arguments": <arguments object>}\n</tool_call>'
        else:
            how = '{"tool_calls": [{"name": <tool name>, "arguments": <arguments object>}]}'
        text_rule = "\nIf no tool fits, answer in plain text." if self.allow_text else ""
        return f"You can call these tools:\n{listing}\nTo call tools, reply with exactly:\n{how}{text_rule}"

    def openai_tools(self) -> list[dict[str, Any]]:
        return [
            {"type": "function", "function": {"name": s.name, "description": s.description, "parameters": s.parameters}}
            for s in self.specs
        ]

    def prompt(self, tokenizer: PreTrainedTokenizerBase, user: str) -> str:
        """The full chat prompt: the template's own tool section (hermes) or `system_prompt()` (json)."""
        messages: list[dict[str, str]] = [{"role": "user", "content": user}]
        if self.format == "hermes" and detect_format(tokenizer) == "hermes":
            return tokenizer.apply_chat_template(
                messages, tools=self.openai_tools(), add_generation_prompt=True, tokenize=False
            )
        if not tokenizer.chat_template:
            return f"{self.system_prompt()}\n\n{user}\n"
        messages.insert(0, {"role": "system", "content": self.system_prompt()})
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


_BRIEF_KEYS = {"type", "properties", "required", "additionalProperties", "description", "title"}


def _brief(schema: Any) -> Any:
    """{property: type or enum values} for a flat object schema; anything else as it is."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict) or set(schema) - _BRIEF_KEYS:
        return schema
    required = set(schema.get("required", []))
    out = {}
    for key, sub in props.items():
        if isinstance(sub, dict) and isinstance(sub.get("enum"), list):
            kind = " | ".join(json.dumps(v) for v in sub["enum"])
        elif isinstance(sub, dict) and isinstance(sub.get("type"), str):
            kind = sub["type"]
        else:
            kind = json.dumps(sub)
        out[key] = kind if key in required else f"{kind} (optional)"
    return out


def _loads(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ToolCallError(f"{what} is not valid JSON ({exc.msg} at char {exc.pos}): {text[:80]!r}") from exc


def tools(
    tools: Sequence[Mapping[str, Any]],
    *,
    allow_text: bool = True,
    format: ToolFormat = "auto",
    tokenizer: PreTrainedTokenizerBase | None = None,
    strict: bool = True,
    max_calls: int | None = None,
) -> Tools:
    """A constraint for a turn that is plain text (if `allow_text`) or calls to `tools`.

    Args:
        tools: OpenAI-style `[{"type": "function", "function": {"name", "description", "parameters"}}]`
            or bare `{"name", "parameters"}` objects; `parameters` is a JSON Schema.
        allow_text: whether a plain-text answer is allowed (it may not begin with the envelope's
            first character).
        format: "json", "hermes", or "auto" (from `tokenizer`'s chat template; "json" without one).
        strict: unsupported schema keywords raise (default) or are ignored with a warning.
        max_calls: the most calls in one turn (None: any number).

    Raises:
        GrammarError: duplicate or missing names, or a parameters schema that does not compile.
    """
    if format == "auto":
        format = detect_format(tokenizer)
    return Tools(tools, allow_text=allow_text, format=format, strict=strict, max_calls=max_calls)


__all__ = ["ToolCall", "Tools", "detect_format", "tools"]
