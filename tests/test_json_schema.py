"""JSON Schema -> lark grammar: per-keyword accept/reject tables (oracle: `jsonschema`), errors and
pointers, lenient warnings, recursion, pydantic input, and property-based soundness checks.

The engine here is lark's own LALR parser with the contextual lexer; the CFG engine's semantics
are defined as exactly that (see guide/grammars/cfg.py)."""

from __future__ import annotations

import itertools
import json
import os
import re
import random
import warnings
from functools import lru_cache

import lark
import lark.lexer
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schema_strategies import dump, json_values, oracle, schemas

from guide.errors import GrammarError, UnsupportedFeatureError
from guide.grammars.json_schema import (
    GuideSchemaWarning,
    JsonSchema,
    json_schema,
    json_value,
    schema_to_lark,
)

lark.lexer.has_interegular = False  # lark's optional collision report: slow and only logs


@lru_cache(maxsize=512)
def _parser(text: str) -> lark.Lark:
    return lark.Lark(text, parser="lalr", lexer="contextual", start="start")


def accepts(grammar_text: str, text: str) -> bool:
    try:
        _parser(grammar_text).parse(text)
        return True
    except lark.exceptions.LarkError:
        return False


def check(schema, valid=(), invalid=(), raw_valid=(), raw_invalid=(), **opts):
    g = schema_to_lark(schema, **opts).lark_text
    for inst in valid:
        assert oracle(schema, inst), f"table error: {inst!r} is not valid"
        assert accepts(g, dump(inst)), f"valid {dump(inst)} rejected"
    for inst in invalid:
        assert not oracle(schema, inst), f"table error: {inst!r} is valid"
        assert not accepts(g, dump(inst)), f"invalid {dump(inst)} accepted"
    for text in raw_valid:
        assert oracle(schema, json.loads(text)), text
        assert accepts(g, text), f"valid text {text!r} rejected"
    for text in raw_invalid:
        assert not accepts(g, text), f"text {text!r} accepted"
    return g


# ----------------------------------------------------------------------------- JSON lexical level


def test_any_json_value_strings_and_numbers():
    g = schema_to_lark(True).lark_text
    good = [
        '"a\\"b"',
        '"\\\\"',
        '"\\/"',
        '"\\b\\f\\n\\r\\t"',
        '"\\u00e9\\uD83D\\ude00"',
        '"é😀"',
        "0",
        "-0",
        "1.5e10",
        "-12.0E-3",
        "1E+2",
        "true",
        "false",
        "null",
        "[]",
        "{}",
        '{"a":[1,{"b":null}]}',
        '""',
    ]
    bad = [
        '"\n"',
        '"\t"',
        '"\\x"',
        '"\\u12"',
        '"abc',
        "01",
        "1.",
        ".5",
        "+1",
        "1e",
        "NaN",
        "Infinity",
        "[1,]",
        '{"a":1,}',
        "{'a':1}",
        " 1",
        "1 ",
        "[1, 2]",
        "tru",
    ]
    for t in good:
        assert accepts(g, t), t
    for t in bad:
        assert not accepts(g, t), t


def test_json_value_constraint_and_key():
    a, b = json_value(), json_value()
    assert a == b and hash(a) == hash(b) and a.key.startswith("json_schema:")
    assert json_value(whitespace="pretty") != a
    assert json_schema({"type": "integer"}).key != json_schema({"type": "number"}).key
    assert isinstance(a, JsonSchema) and "start" in a.lark_text
    ab = {"type": "object", "properties": {"a": {}, "b": {}}}
    ba = {"type": "object", "properties": {"b": {}, "a": {}}}
    assert json_schema(ab) != json_schema(ba)  # property order changes the grammar
    assert json_schema(json.dumps(ab)) == json_schema(ab)


# ----------------------------------------------------------------------------- keywords


def test_type_single_and_list():
    check(
        {"type": "integer"},
        valid=[0, -7, 12345678901234567890, 3.0],
        invalid=[1.5, "1", None, True],
    )
    check({"type": "number"}, valid=[0, 1.5, -2e-3], invalid=["1", None])
    check({"type": "string"}, valid=["", "x"], invalid=[1, None])
    check({"type": "boolean"}, valid=[True, False], invalid=[0, "true"])
    check({"type": "null"}, valid=[None], invalid=[0, False])
    check({"type": ["string", "null"]}, valid=["a", None], invalid=[1, [], {}])
    check({"type": "array"}, valid=[[], [1, "a", [None]]], invalid=[{}, "[]"])
    check({"type": "object"}, valid=[{}, {"a": [1]}], invalid=[[], None])


def test_properties_required_additional():
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
        "required": ["a"],
    }
    check(
        schema,
        valid=[{"a": 1}, {"a": 1, "b": "x"}, {"a": 1, "zz": [1]}, {"a": 1, "b": "x", "c": None}],
        invalid=[{}, {"b": "x"}, {"a": "1"}, {"a": 1, "b": 2}],
    )
    g = schema_to_lark(schema).lark_text
    # listed keys may not come back as "additional" ones (that would dodge their schema)
    assert not accepts(g, '{"a":1,"a":"x"}')
    assert not accepts(g, '{"a":1,"b":"x","b":3}')
    assert not accepts(g, '{"a":1,"\\u0062":3}')  # "b" spelled with an escape
    assert accepts(g, '{"a":1,"ab":3}') and accepts(g, '{"a":1,"":3}')
    # schema order: listed properties first, in schema order
    assert not accepts(g, '{"b":"x","a":1}')
    closed = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "additionalProperties": False,
    }
    check(closed, valid=[{}, {"a": 1}], invalid=[{"b": 1}, {"a": 1, "b": 1}])
    typed = {"type": "object", "properties": {"a": {}}, "additionalProperties": {"type": "integer"}}
    check(typed, valid=[{"a": "x", "b": 1, "c": 2}], invalid=[{"b": "x"}])
    # required but not listed: value from additionalProperties
    check(
        {"type": "object", "required": ["k"], "additionalProperties": {"type": "null"}},
        valid=[{"k": None}],
        invalid=[{}, {"k": 1}],
    )
    check(
        {"type": "object", "required": ["k"], "additionalProperties": False}, invalid=[{}, {"k": 1}]
    )


def test_property_order_any():
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "null"}},
        "required": ["a", "c"],
        "additionalProperties": False,
    }
    g = schema_to_lark(schema, property_order="any").lark_text
    for text in [
        '{"a":1,"c":null}',
        '{"c":null,"a":1}',
        '{"b":"x","c":null,"a":1}',
        '{"c":null,"b":"x","a":1}',
    ]:
        assert accepts(g, text), text
    for text in ['{"a":1}', '{"a":1,"a":2,"c":null}', '{"b":"x"}', '{"c":null,"a":"1"}', "{}"]:
        assert not accepts(g, text), text


def test_pattern_properties():
    schema = {
        "type": "object",
        "patternProperties": {"^x-": {"type": "integer"}},
        "additionalProperties": False,
    }
    check(schema, valid=[{}, {"x-a": 1, "x-b": 2}], invalid=[{"y": 1}, {"x-a": "1"}])
    # with additionalProperties allowed, extra keys are restricted to the patterns (documented)
    g = schema_to_lark(
        {"type": "object", "patternProperties": {"^x-": {"type": "integer"}}}
    ).lark_text
    assert accepts(g, '{"x-a":1}') and not accepts(g, '{"x-a":"s"}')


def test_arrays_items_prefix_bounds():
    check(
        {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3},
        valid=[[1], [1, 2, 3]],
        invalid=[[], [1, 2, 3, 4], ["a"]],
    )
    check(
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
        valid=[[], ["a"], ["a", 1]],
        invalid=[["a", 1, 2], [1]],
    )
    check(
        {
            "type": "array",
            "prefixItems": [{"type": "string"}],
            "items": {"type": "null"},
            "minItems": 2,
        },
        valid=[["a", None], ["a", None, None]],
        invalid=[["a"], ["a", 1]],
    )
    draft7 = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "array",
        "items": [{"type": "integer"}],
        "additionalItems": {"type": "boolean"},
    }
    check(draft7, valid=[[1], [1, True, False]], invalid=[[1, 2], ["a"]])
    check(
        {"type": "array", "minItems": 40, "maxItems": 41, "items": {"const": 0}},
        valid=[[0] * 40, [0] * 41],
        invalid=[[0] * 39, [0] * 42],
    )


def test_enum_const():
    check(
        {"enum": ["a", 1, None, [1, {"k": True}], {"x": "y"}]},
        valid=["a", 1, 1.0, None, [1, {"k": True}], {"x": "y"}],
        invalid=["b", 2, True, [1], {"x": "z"}],
    )
    check({"const": 'q"\\'}, valid=['q"\\'], invalid=["q"])
    # siblings filter the enum
    check({"enum": ["a", "bb", "ccc"], "minLength": 2}, valid=["bb", "ccc"], invalid=["a"])
    check({"const": False}, valid=[False], invalid=[0, None])


def test_ref_defs_and_recursion():
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "v": {"type": "integer"},
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["v"],
                "additionalProperties": False,
            }
        },
        "$ref": "#/$defs/node",
    }
    deep = {"v": 0, "kids": [{"v": 1, "kids": [{"v": 2, "kids": [{"v": 3}]}]}, {"v": 4}]}
    g = check(tree, valid=[{"v": 1}, deep], invalid=[{"v": 1, "kids": [{"v": "x"}]}, {"kids": []}])
    assert len(g) < 5000  # recursive rules, not an unrolled expansion
    d7 = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": {"s": {"type": "string"}},
        "type": "array",
        "items": {"$ref": "#/definitions/s"},
    }
    check(d7, valid=[["a"]], invalid=[[1]])
    # a schema that refers to itself through the root
    linked = {
        "type": "object",
        "properties": {"next": {"$ref": "#"}, "n": {"type": "null"}},
        "additionalProperties": False,
    }
    check(linked, valid=[{}, {"next": {"next": {"n": None}}}], invalid=[{"next": 1}])


def test_anyof_oneof_allof_not():
    check(
        {
            "anyOf": [
                {"type": "integer", "maximum": 3},
                {"type": "string", "maxLength": 1},
                {"type": "integer", "minimum": 10},
            ]
        },
        valid=[3, -5, 10, 100, "", "a"],
        invalid=[4, 9, "ab", None],
    )
    check(
        {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer"}}]},
        valid=["a", [1]],
        invalid=[1, ["a"]],
    )
    # oneOf of objects told apart by a required discriminator property
    pet = {
        "oneOf": [
            {
                "type": "object",
                "properties": {"kind": {"const": "cat"}, "lives": {"type": "integer"}},
                "required": ["kind"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"kind": {"enum": ["dog", "wolf"]}, "bark": {"type": "boolean"}},
                "required": ["kind"],
                "additionalProperties": False,
            },
        ]
    }
    check(
        pet,
        valid=[{"kind": "cat", "lives": 9}, {"kind": "dog", "bark": True}],
        invalid=[{"kind": "cat", "bark": True}, {}],
    )
    # made exclusive by forbidding a key the other branch requires (an under-approximation)
    check(
        {"oneOf": [{"type": "object", "required": ["a"]}, {"type": "object", "required": ["b"]}]},
        valid=[{"a": 1}, {"b": 2, "c": 3}],
        invalid=[{"a": 1, "b": 2}, {}],
    )
    g = schema_to_lark(
        {"oneOf": [{"type": "object", "required": ["a"]}, {"type": "object", "required": ["b"]}]}
    ).lark_text
    assert not accepts(g, '{"b":1,"a":2}')
    closed = {
        "oneOf": [
            {
                "type": "object",
                "properties": {"next": {"type": "string"}},
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"prev": {"type": "string"}},
                "additionalProperties": False,
            },
        ]
    }
    check(closed, valid=[{"next": "x"}, {"prev": "y"}], invalid=[{}, {"next": "x", "prev": "y"}])
    with pytest.raises(UnsupportedFeatureError):
        schema_to_lark({"oneOf": [{"type": "object"}, {"type": "object", "minProperties": 1}]})
    check(
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                {"properties": {"b": {"type": "string"}}, "required": ["b"]},
            ]
        },
        valid=[{"a": 1, "b": "x"}],
        invalid=[{"a": 1}, {"a": "1", "b": "x"}],
    )
    check(
        {"allOf": [{"minimum": 2}, {"maximum": 5}], "type": "integer"}, valid=[2, 5], invalid=[1, 6]
    )
    check({"type": ["integer", "string"], "not": {"type": "string"}}, valid=[1], invalid=["a"])
    check({"type": "number", "not": {"type": "integer"}}, valid=[1.5, -0.25], invalid=[1, 2.0])
    # anyOf with sibling keywords: each branch is intersected with them
    check(
        {
            "type": "object",
            "required": ["a"],
            "anyOf": [
                {"properties": {"a": {"type": "integer"}}},
                {"properties": {"a": {"type": "string"}}},
            ],
        },
        valid=[{"a": 1}, {"a": "x"}],
        invalid=[{}, {"a": None}],
    )


def test_pattern_is_a_search_on_the_decoded_string():
    check({"type": "string", "pattern": "b"}, valid=["b", "abc"], invalid=["", "ac"])
    check({"type": "string", "pattern": "^[a-c]+$"}, valid=["abc"], invalid=["abd", ""])
    g = check(
        {"type": "string", "pattern": '^a"b\\\\c\\n$'}, valid=['a"b\\c\n'], invalid=['a"b\\c']
    )
    assert accepts(g, '"a\\"b\\\\c\\u000a"')  # the newline may also be a \u escape
    g = check({"type": "string", "pattern": "^\\d{3}-\\w\\s$"}, valid=["123-a "], invalid=["12-a "])
    assert not accepts(g, dump("123-é "))  # classes are ASCII (ECMA-262), a subset of Python's
    g = check({"type": "string", "pattern": "^\\S\\W\\D$"}, valid=["a-x"], invalid=["a_x", "a-1"])
    assert not accepts(g, dump("\ufeff-x"))  # not a space for Python, so \S must not take it
    check({"type": "string", "pattern": "^(ab|cd)*$"}, valid=["", "abcd"], invalid=["abc"])
    check({"type": "string", "pattern": "^[^x]$"}, valid=["y", "\u00e9", '"'], invalid=["x", "yy"])


def test_string_lengths_count_code_points():
    g = check(
        {"type": "string", "minLength": 2, "maxLength": 3},
        valid=["ab", "abc", "é😀"],
        invalid=["a", "abcd"],
    )
    assert accepts(g, '"\\n\\u0041"') and accepts(
        g, '"\\ud83d\\ude00x"'
    )  # a surrogate pair is one character
    assert not accepts(g, '"\\ud83d\\ude00"')
    check(
        {"type": "string", "pattern": "^[a-z]+$", "maxLength": 3},
        valid=["abc"],
        invalid=["abcd", ""],
    )
    check(
        {"type": "string", "pattern": "^[A-Z]{2}-[0-9]+$", "minLength": 5, "maxLength": 6},
        valid=["AB-123", "AB-12"],
        invalid=["AB-1", "AB-1234", "A-123"],
    )
    check(
        {"type": "string", "pattern": "^x+$", "minLength": 3, "maxLength": 2}, invalid=["xx", "xxx"]
    )
    check(
        {"type": "string", "format": "date", "maxLength": 10},
        valid=["2024-02-29"],
        invalid=["2023-02-29"],
    )


def test_formats():
    cases = {
        "date-time": (
            ["2024-01-31T23:59:59Z", "2020-02-29T00:00:00.5+05:30"],
            ["2024-01-32T00:00:00Z", "2024-01-01 00:00:00Z"],
        ),
        "date": (
            ["2000-02-29", "1999-12-31", "0001-01-01"],
            ["1900-02-29", "1999-04-31", "99-01-01", "0000-01-01"],
        ),
        "time": (["12:00:00Z", "23:59:59.123-01:00"], ["24:00:00Z", "12:00"]),
        "duration": (["P1D", "PT1H30M", "P2W", "P1Y2M3DT4H5M6S"], ["P", "PT", "1D", "P1H"]),
        "email": (["a.b+c@example.com"], ["no-at-sign"]),
        "uuid": (["123e4567-e89b-12d3-a456-426614174000"], ["123e4567e89b12d3a456426614174000"]),
        "uri": (["https://ex.com/a?b=c#d", "urn:isbn:0451450523"], ["//no-scheme", "http://a b"]),
        "ipv4": (["192.168.0.1", "0.0.0.0"], ["256.1.1.1", "01.1.1.1", "1.2.3"]),
        "ipv6": (["::1", "2001:db8::ff00:42:8329", "::ffff:1.2.3.4"], ["1:2:3:4:5:6:7:8:9", ":::"]),
        "hostname": (["example.com", "a-b.c"], ["-a.com", "a_b.com"]),
    }
    for fmt, (good, bad) in cases.items():
        g = schema_to_lark({"type": "string", "format": fmt}).lark_text
        for s in good:
            assert accepts(g, dump(s)), (fmt, s)
        for s in bad:
            assert not accepts(g, dump(s)), (fmt, s)
    # custom format names are annotations nobody checks: ignored
    check({"type": "string", "format": "my-own-format"}, valid=["x"])


def test_integer_ranges_are_exact():
    for lo, hi in [
        (0, 0),
        (-5, 120),
        (7, 7),
        (-1000, -10),
        (99, 1001),
        (None, 10),
        (-3, None),
        (1, None),
    ]:
        schema = {"type": "integer"}
        if lo is not None:
            schema["minimum"] = lo
        if hi is not None:
            schema["maximum"] = hi
        g = schema_to_lark(schema).lark_text
        a = -1500 if lo is None else lo
        b = 1500 if hi is None else hi
        for x in range(a - 30, b + 31, max(1, (b - a) // 300)):
            assert accepts(g, str(x)) == ((lo is None or x >= lo) and (hi is None or x <= hi)), (
                schema,
                x,
            )
    check(
        {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
        valid=[1, 9],
        invalid=[0, 10],
    )
    check({"type": "integer", "minimum": 1.5, "maximum": 3.5}, valid=[2, 3], invalid=[1, 4])


def test_number_ranges():
    check(
        {"type": "number", "minimum": 0, "maximum": 1},
        valid=[0, 0.5, 1, 1.0, 0.999],
        invalid=[-0.1, 1.01, 2],
    )
    check({"type": "number", "exclusiveMinimum": 0}, valid=[0.001, 5], invalid=[0, -1, 0.0])
    check({"type": "number", "exclusiveMaximum": -2}, valid=[-2.5, -3], invalid=[-2, -1.5, 0])
    check(
        {"type": "number", "minimum": -1, "exclusiveMaximum": 1},
        valid=[-1, -0.5, 0, 0.99],
        invalid=[-1.01, 1, 1.5],
    )
    check({"type": "number", "minimum": 0.5}, valid=[0.5, 0.51, 1, 7.25], invalid=[0.49, 0, -1])
    check(
        {"type": "number", "exclusiveMinimum": -1.25, "maximum": 2.05},
        valid=[-1.2, -1, 0, 2, 2.05, 2.0, 2.01, 1.999],
        invalid=[-1.25, -1.3, 2.06, 2.1, 3],
    )
    from decimal import Decimal

    for lo, lo_ex, hi, hi_ex in [
        (0.5, False, None, False),
        (-1.25, True, 2.05, False),
        (-0.3, False, 0.3, True),
        (None, False, -2.5, False),
        (1, True, 3.75, True),
    ]:
        schema = {"type": "number"}
        if lo is not None:
            schema["exclusiveMinimum" if lo_ex else "minimum"] = lo
        if hi is not None:
            schema["exclusiveMaximum" if hi_ex else "maximum"] = hi
        g = schema_to_lark(schema).lark_text
        for k in range(-500, 501, 3):
            x = Decimal(k) / 100
            for text in {str(x), f"{x:.3f}"}:
                v = float(text)
                want = (lo is None or (v > lo if lo_ex else v >= lo)) and (
                    hi is None or (v < hi if hi_ex else v <= hi)
                )
                assert accepts(g, text) == want, (schema, text)
    with pytest.raises(UnsupportedFeatureError) as exc:
        schema_to_lark({"type": "number", "minimum": 0.5, "maximum": 0.75})
    assert exc.value.feature == "minimum" and exc.value.where == "/minimum"


def test_multiple_of_integers():
    g = check({"type": "integer", "multipleOf": 3}, valid=[0, 3, -6, 999], invalid=[1, 4, -7])
    for x in range(-200, 200):
        assert accepts(g, str(x)) == (x % 3 == 0), x
    check(
        {"type": "integer", "multipleOf": 5, "minimum": 0, "maximum": 20},
        valid=[0, 5, 20],
        invalid=[3, 25],
    )


def test_whitespace_modes():
    schema = {
        "type": "object",
        "properties": {"a": {"type": "array", "items": {"type": "integer"}}},
    }
    inst = {"a": [1, 2]}
    pretty = schema_to_lark(schema, whitespace="pretty").lark_text
    assert accepts(pretty, json.dumps(inst, indent=2)) and accepts(pretty, json.dumps(inst))
    assert accepts(pretty, dump(inst))
    assert not accepts(pretty, '{"a":' + " " * 200 + "[1]}")
    compact = schema_to_lark(schema).lark_text
    assert accepts(compact, dump(inst)) and not accepts(compact, json.dumps(inst))
    custom = schema_to_lark(schema, whitespace="[ ]{0,2}").lark_text
    assert accepts(custom, '{ "a" : [ 1 ,2 ] }') and not accepts(custom, '{   "a":[1]}')
    with pytest.raises(GrammarError, match="unbounded"):
        schema_to_lark(schema, whitespace=r"\s*")
    with pytest.raises(GrammarError):
        schema_to_lark(schema, whitespace="x?")


# ----------------------------------------------------------------------------- errors, strict, lenient


def test_malformed_schemas_name_the_pointer():
    with pytest.raises(GrammarError, match="/properties/a/type"):
        schema_to_lark({"properties": {"a": {"type": "strin"}}})
    with pytest.raises(GrammarError, match="/items/0/minLength"):
        schema_to_lark({"items": [{"minLength": -1}]})
    with pytest.raises(GrammarError, match="not valid JSON"):
        schema_to_lark("{not json")
    with pytest.raises(GrammarError, match="points to nothing"):
        schema_to_lark({"$ref": "#/$defs/missing"})
    with pytest.raises(GrammarError):
        schema_to_lark(42)


def test_unsupported_keywords_in_strict_mode():
    cases = [
        ({"type": "array", "uniqueItems": True}, "uniqueItems", "/uniqueItems"),
        (
            {"properties": {"a": {"type": "array", "contains": {"type": "integer"}}}},
            "contains",
            "/properties/a/contains",
        ),
        (
            {"type": "object", "propertyNames": {"pattern": "a", "maxLength": 3}},
            "propertyNames",
            "/propertyNames",
        ),
        ({"if": {"type": "string"}, "then": {"minLength": 1}}, "if", "/if"),
        ({"oneOf": [{"type": "integer"}, {"minimum": 2}]}, "oneOf", "/oneOf"),
        ({"not": {"minimum": 3}}, "not", "/not"),
        ({"type": "string", "pattern": "^(?=a)"}, "pattern", "/pattern"),
        ({"type": "string", "pattern": "(a)\\1"}, "pattern", "/pattern"),
        ({"type": "number", "multipleOf": 0.3}, "multipleOf", "/multipleOf"),
    ]
    for schema, feature, where in cases:
        with pytest.raises(UnsupportedFeatureError) as exc:
            schema_to_lark(schema)
        assert (exc.value.feature, exc.value.where) == (feature, where), schema
    # not applicable to the type: no error
    schema_to_lark({"type": "string", "uniqueItems": True})
    schema_to_lark({"type": "array", "uniqueItems": False})


def test_remote_refs_are_never_fetched():
    with pytest.raises(UnsupportedFeatureError) as exc:
        schema_to_lark({"$ref": "https://example.com/schema.json"})
    assert exc.value.feature == "$ref" and exc.value.where == "/$ref"
    # the same URI, when it names a subschema of the document, is local
    schema = {
        "$id": "https://example.com/root.json",
        "$defs": {"s": {"$id": "https://example.com/s.json", "type": "string"}},
        "$ref": "https://example.com/s.json",
    }
    check(schema, valid=["x"], invalid=[1])


def test_size_and_depth_caps():
    deep: dict = {"type": "integer"}
    for _ in range(200):
        deep = {"type": "array", "items": deep}
    with pytest.raises(GrammarError, match="deeper"):
        schema_to_lark(deep)
    with pytest.raises(UnsupportedFeatureError) as exc:
        schema_to_lark({"type": "array", "minItems": 10**6})
    assert exc.value.feature == "minItems"
    with pytest.raises(UnsupportedFeatureError) as exc:
        schema_to_lark({"type": "array", "minItems": 501, "maxItems": 10**6})
    assert exc.value.feature == "maxItems"


def test_max_items_above_the_cap_generates_up_to_the_cap():
    """maxItems 1000: arrays of up to 500 items (all valid); longer ones are not generated."""
    g = schema_to_lark({"type": "array", "items": {"const": 0}, "maxItems": 1000}).lark_text
    assert accepts(g, "[]") and accepts(g, "[" + ",".join(["0"] * 500) + "]")
    assert not accepts(g, "[" + ",".join(["0"] * 501) + "]")


def test_annotations_are_ignored_silently():
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:x",
        "title": "t",
        "description": "d",
        "examples": [1],
        "default": 1,
        "$comment": "c",
        "deprecated": True,
        "readOnly": True,
        "writeOnly": False,
        "contentMediaType": "text/plain",
        "type": "integer",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        js = json_schema(schema)
    assert js.warnings == []


def test_lenient_mode_warns_once_listing_every_ignored_keyword():
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "uniqueItems": True},
            "n": {"type": "number", "multipleOf": 0.3},
        },
        "propertyNames": {"pattern": "[a-z]", "maxLength": 5},
    }
    with pytest.raises(UnsupportedFeatureError):
        json_schema(schema)
    with pytest.warns(GuideSchemaWarning) as record:
        js = json_schema(schema, strict=False)
    assert len(record) == 1
    msg = str(record[0].message)
    for ptr in ("/properties/tags/uniqueItems", "/properties/n/multipleOf", "/propertyNames"):
        assert ptr in msg
    assert {(p, k) for p, k, _m in js.warnings} == {
        ("/properties/tags/uniqueItems", "uniqueItems"),
        ("/properties/n/multipleOf", "multipleOf"),
        ("/propertyNames", "propertyNames"),
    }
    assert record[0].filename == __file__  # stacklevel=2: points at the caller
    assert accepts(js.lark_text, '{"tags":[1,1],"n":0.15}')


def test_unsatisfiable_schema_gives_an_empty_language():
    g = schema_to_lark({"allOf": [{"type": "string"}, {"type": "integer"}]}).lark_text
    for t in ['""', "1", "null", "{}"]:
        assert not accepts(g, t)
    g = schema_to_lark(False).lark_text
    assert not accepts(g, "null")


def test_pydantic_models():
    pydantic = pytest.importorskip("pydantic")

    class Pet(pydantic.BaseModel):
        name: str
        age: int = pydantic.Field(ge=0, le=30)
        kind: str = pydantic.Field(pattern="^(cat|dog)$")

    class Owner(pydantic.BaseModel):
        owner: str
        pets: list[Pet]
        nick: str | None = None

    js = json_schema(Owner)
    good = {"owner": "ann", "pets": [{"name": "rex", "age": 3, "kind": "dog"}], "nick": None}
    assert accepts(js.lark_text, dump(good))
    Owner.model_validate_json(dump(good))
    assert not accepts(
        js.lark_text, dump({"owner": "ann", "pets": [{"name": "rex", "age": 31, "kind": "dog"}]})
    )
    assert not accepts(
        js.lark_text, dump({"owner": "ann", "pets": [{"name": "rex", "age": 3, "kind": "cow"}]})
    )


# ----------------------------------------------------------------------------- property-based soundness


def _sampler(grammar_text: str):
    p = _parser(grammar_text)
    rules: dict[str, list] = {}
    for r in p.rules:
        rules.setdefault(r.origin.name, []).append([(s.name, s.is_term) for s in r.expansion])
    regex = {t.name: t.pattern.to_regexp() for t in p.terminals}
    # height of each nonterminal (for forcing termination)
    height = {n: float("inf") for n in rules}
    changed = True
    while changed:
        changed = False
        for n, alts in rules.items():
            for alt in alts:
                h = 1 + max([0] + [0 if t else height[s] for s, t in alt])
                if h < height[n]:
                    height[n], changed = h, True
    return rules, regex, height


def _sample(data, grammar_text: str, max_depth: int = 12) -> str:
    rules, regex, height = _sampler(grammar_text)
    out: list[str] = []

    def expand(name, depth):
        alts = [a for a in rules[name] if all(t or height[s] < float("inf") for s, t in a)]
        if depth > max_depth:
            best = min(1 + max([0] + [0 if t else height[s] for s, t in a]) for a in alts)
            alts = [a for a in alts if 1 + max([0] + [0 if t else height[s] for s, t in a]) == best]
        alt = data.draw(st.sampled_from(alts))
        for s, t in alt:
            if t:
                out.append(
                    data.draw(st.from_regex(regex[s], fullmatch=True).filter(lambda x: len(x) < 40))
                )
            else:
                expand(s, depth + 1)

    expand("start", 0)
    return "".join(out)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(schema=schemas, data=st.data())
def test_random_schemas_every_generated_text_validates(schema, data):
    try:
        sg = schema_to_lark(schema)
    except UnsupportedFeatureError:
        assume(False)
        return
    assume(
        not sg.warnings
    )  # the only strict-mode warning: an unsatisfiable schema (empty language)
    g = sg.lark_text
    try:
        _parser(g)
    except lark.exceptions.GrammarError:
        pytest.fail(f"schema_to_lark produced a grammar lark rejects for {schema}")
    _rules, _regex, height = _sampler(g)
    assume(height["start"] < float("inf"))  # empty language (unsatisfiable schema)
    text = _sample(data, g)
    assume(accepts(g, text))  # a derivation lark's first-match lexer splits differently
    inst = json.loads(text)
    assert oracle(schema, inst), (schema, text)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(schema=schemas, values=st.lists(json_values, min_size=1, max_size=8))
def test_random_schemas_accepted_values_validate(schema, values):
    try:
        g = schema_to_lark(schema).lark_text
    except UnsupportedFeatureError:
        assume(False)
        return
    for v in values:
        if accepts(g, dump(v)):
            assert oracle(schema, v), (schema, v)


# ----------------------------------------------------------------------------- through the CFG engine


def test_through_the_cfg_engine():
    cfg = pytest.importorskip("guide.grammars.cfg")
    from guide.testing import random_walk, toy_vocab

    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "minimum": 0, "maximum": 99},
            "tag": {"enum": ["x", "y"]},
            "ok": {"type": "boolean"},
        },
        "required": ["id", "tag"],
        "additionalProperties": False,
    }
    js = json_schema(schema)
    grammar = cfg.Grammar(js.lark_text)
    for text in ['{"id":5,"tag":"x"}', '{"id":99,"tag":"y","ok":true}']:
        assert grammar.parses(text)
    assert not grammar.parses('{"id":100,"tag":"x"}')
    vocab = toy_vocab([b'{"id":', b'"tag":', b'"x"', b"true", b","])
    compiled = js.compile(vocab)
    rng = random.Random(0)
    finished = 0
    for _ in range(10):
        m = compiled.matcher()
        toks, done = random_walk(m, rng, max_tokens=120, stop_p=0.5)
        if done:
            finished += 1
            text = vocab.decode(toks).decode()
            assert grammar.parses(text), text
            assert oracle(schema, json.loads(text)), text
    assert finished


def test_overlapping_object_branches():
    schema = {
        "anyOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}},
            {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "null"}}},
        ]
    }
    with pytest.raises(UnsupportedFeatureError) as exc:
        schema_to_lark(schema)
    assert exc.value.feature == "anyOf" and exc.value.where == "/anyOf"
    with pytest.warns(GuideSchemaWarning, match="/anyOf"):
        js = json_schema(schema, strict=False)
    assert accepts(js.lark_text, '{"a":1}') and accepts(js.lark_text, '{"a":"x","b":null}')


@pytest.mark.parametrize(
    "fmt", sorted(__import__("guide.grammars.json_schema", fromlist=["FORMATS"]).FORMATS)
)
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_format_string_passes_the_format_checker(fmt, data):
    from guide.grammars.json_schema import FORMATS

    s = data.draw(st.from_regex(FORMATS[fmt][0], fullmatch=True))
    if fmt == "relative-json-pointer":
        # jsonschema's checker (with the format extras) rejects any integer prefix with a 0 after
        # its first digit ("100#"); the draft's grammar, checked directly instead:
        assert re.fullmatch(r"(0|[1-9][0-9]*)(#|(/([^~/]|~[01])*)*)", s, re.S), s
        return
    assert oracle({"type": "string", "format": fmt}, s), (fmt, s)


def test_multiple_of_next_to_other_numbers_in_anyof_is_refused_not_mislexed():
    """multipleOf integers are lexed digit by digit; beside another number set in a union the
    lexer would have to cut "10" two ways and rejected it (found by the fuzz suite)."""
    schema = {"anyOf": [{"type": "integer", "multipleOf": 5}, {"type": "integer", "minimum": 0, "maximum": 1}]}
    with pytest.raises(UnsupportedFeatureError) as exc:
        schema_to_lark(schema)
    assert exc.value.feature == "multipleOf" and exc.value.where == "/anyOf"
    with pytest.warns(GuideSchemaWarning, match="multipleOf"):
        js = json_schema(schema, strict=False)
    assert all(accepts(js.lark_text, s) for s in ["10", "0", "1", "5", "3"])  # widened: any integer
    # one multipleOf alone, or beside non-numbers, still compiles and stays exact
    alone = schema_to_lark({"anyOf": [{"type": "integer", "multipleOf": 5}, {"type": "string"}]}).lark_text
    assert accepts(alone, "10") and accepts(alone, '"x"') and not accepts(alone, "11")


# ----------------------------------------------------------------------------- strings, numbers, keys
# (pattern with length bounds, anchors in alternatives, fractional multipleOf, patternProperties
# over listed properties): checked with lark and through the CFG engine's own regex compiler


@lru_cache(maxsize=64)
def _engine(text: str):
    from guide.grammars.cfg import Grammar
    from guide.testing import toy_vocab

    vocab = toy_vocab()
    return Grammar(text).compile(vocab), next(iter(vocab.eos_ids))


def engine_accepts(grammar_text: str, text: str) -> bool:
    """Byte by byte through the CFG engine (its lexer is built by guide's regex compiler)."""
    compiled, eos = _engine(grammar_text)
    m = compiled.matcher()
    return all(m.advance(b) for b in text.encode()) and m.advance(eos)


_LEN_CASES = [
    ("^([a-zA-Z0-9-_]*)$", 1, 22),
    ("^([\\w\\/-]|[\\w-][\\w\\/-]*[\\w-])$", 0, 5),
    ("^[a-z]+(?:-[a-z0-9]+)*$", 3, None),
    ("^(http|https)://", 10, None),
    ("^(?:\\S+\\s+){0,3}\\S+$", 0, 9),
    ("(\\d+\\.\\d+\\.\\d+.*)", 0, 8),
    ("b|^a", 2, 3),
]


@pytest.mark.parametrize(("pattern", "mn", "mx"), _LEN_CASES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_pattern_with_length_bounds_is_the_intersection(pattern, mn, mx, data):
    """minLength/maxLength with a pattern: exactly re.search(pattern) and the length in code points."""
    import re

    schema = {"type": "string", "pattern": pattern, "minLength": mn}
    if mx is not None:
        schema["maxLength"] = mx
    g = schema_to_lark(schema).lark_text
    s = data.draw(
        st.one_of(
            st.text(st.sampled_from("ab-_/.1 :\té\"\\"), max_size=12),
            st.from_regex(pattern, fullmatch=True).filter(lambda t: "\n" not in t),
        )
    )
    want = re.search(pattern, s) is not None and mn <= len(s) and (mx is None or len(s) <= mx)
    got = accepts(g, dump(s))
    assert got <= want, s  # never an invalid string
    # complete on printable ASCII (guide's \w, \d, \s, \S are what ECMA-262 and Python agree on;
    # `$` before a final newline is not generated)
    if want and s.isascii() and all(c.isprintable() or c == "\t" for c in s):
        assert got, s
    if data.draw(st.integers(0, 9)) == 0:  # the engine's own automaton agrees
        assert engine_accepts(g, dump(s)) == got, s


def test_pattern_with_length_bounds_through_the_engine():
    g = schema_to_lark({"type": "string", "pattern": "^[a-z]+(-[a-z]+)*$", "minLength": 3, "maxLength": 6}).lark_text
    for text, ok in [('"abc"', True), ('"a-b"', True), ('"ab"', False), ('"abcdefg"', False),
                     ('"ab-cd"', True), ('"a-"', False), ('"abc-de"', True), ('"abc-def"', False)]:
        assert accepts(g, text) == ok == engine_accepts(g, text), text
    g = schema_to_lark({"type": "string", "format": "email", "maxLength": 8}).lark_text
    for text, ok in [('"a@b.co"', True), ('"ab@cd.ef"', True), ('"abc@de.fg"', False), ('"abc"', False)]:
        assert accepts(g, text) == ok == engine_accepts(g, text), text
    # unioned with other scalars, the lookahead stays a top-level alternative
    g = schema_to_lark({"type": ["string", "integer", "null"], "pattern": "x", "maxLength": 2}).lark_text
    for text, ok in [('"x"', True), ('"ax"', True), ('"axa"', False), ('"ab"', False), ("12", True), ("null", True)]:
        assert accepts(g, text) == ok == engine_accepts(g, text), text


def test_pattern_with_length_bounds_cap_names_the_keyword():
    with pytest.raises(UnsupportedFeatureError) as exc:
        schema_to_lark({"type": "string", "pattern": "^(a|bc)+$", "maxLength": 5000})
    assert (exc.value.feature, exc.value.where) == ("maxLength", "/maxLength")
    with pytest.raises(UnsupportedFeatureError) as exc:
        schema_to_lark({"type": "string", "format": "email", "minLength": 5000})
    assert exc.value.feature == "minLength"
    # an empty intersection is an empty language, not an error
    g = schema_to_lark({"type": ["string", "null"], "pattern": "^(ab)+$", "maxLength": 1}).lark_text
    assert accepts(g, "null") and not accepts(g, '"ab"')


def test_anchors_at_the_ends_of_alternatives():
    check({"type": "string", "pattern": "^01$|^07$"}, valid=["01", "07"], invalid=["017", "x01", "0", "07 "])
    check({"type": "string", "pattern": "^$|^[a-z]+$"}, valid=["", "abc"], invalid=["a1", " "])
    check({"type": "string", "pattern": "(^x$)|(^y$)"}, valid=["x", "y"], invalid=["xy", "yx", "xx"])
    check({"type": "string", "pattern": "^$|(^(?:\\S+\\s+){0,1}\\S+$)"}, valid=["", "a", "a b"],
          invalid=["a b c", " a", "a "])
    check({"type": "string", "pattern": "^ab|c$"}, valid=["abx", "xc", "ab"], invalid=["xab", "cx"])
    check({"type": "string", "pattern": "^(?:a$|b)"}, valid=["a", "b", "bcd"], invalid=["ab", "cb"])
    for bad in ["a^b", "(^a|b)c", "x(^a$)", "a$b"]:
        with pytest.raises(UnsupportedFeatureError) as exc:
            schema_to_lark({"type": "string", "pattern": bad})
        assert exc.value.feature == "pattern"


def test_fractional_multiple_of():
    check({"type": "number", "multipleOf": 0.25},
          valid=[0, 1, -2, 0.25, 0.5, -0.75, 12.5],
          invalid=[0.1, 0.3, -0.2, 1.125],
          raw_valid=["0.250", "3.50000", "-0.0", "7.0"],
          raw_invalid=["0.2", "0.251", "1e2", "0.25e0"])
    # 0.07 is a multiple of 0.01 in decimal (jsonschema's float quotient says 7.000000000000001)
    g = schema_to_lark({"type": "number", "multipleOf": 0.01, "minimum": 0, "maximum": 99.99}).lark_text
    for text, ok in [("0", True), ("0.01", True), ("99.99", True), ("0.07", True), ("12.3", True),
                     ("0.001", False), ("99.991", False), ("100", False), ("-0.01", False), ("1.230", True)]:
        assert accepts(g, text) == ok == engine_accepts(g, text), text
    g = schema_to_lark({"type": "number", "multipleOf": 0.5, "exclusiveMinimum": 0.5, "exclusiveMaximum": 2}).lark_text
    assert [t for t in ["0.5", "1", "1.0", "1.5", "2", "0.75"] if accepts(g, t)] == ["1", "1.0", "1.5"]
    # integers are all multiples of d / 10^k when d divides 10^k
    check({"type": "integer", "multipleOf": 0.5}, valid=[0, 3, -7], raw_invalid=["0.5"])
    check({"type": ["number", "null"], "multipleOf": 0.125}, valid=[None, 0.375, -2], invalid=[0.3])
    for bad in (0.3, 1.5, 0.07):
        with pytest.raises(UnsupportedFeatureError) as exc:
            schema_to_lark({"type": "number", "multipleOf": bad})
        assert (exc.value.feature, exc.value.where) == ("multipleOf", "/multipleOf")


def test_pattern_properties_matching_a_listed_property():
    schema = {
        "type": "object",
        "properties": {"line1": {"type": "string"}, "zip": {"type": "integer"}},
        "patternProperties": {"^line[1-3]$": {"maxLength": 3}},
        "additionalProperties": False,
    }
    g = check(
        schema,
        valid=[{"line1": "abc"}, {"line1": "a", "line2": "b"}, {"zip": 5, "line3": "xyz"}, {}],
        invalid=[{"line1": "abcd"}, {"line2": "abcd"}, {"line4": "a"}, {"line1": 5}],
    )
    # a listed name is never an extra key (that would repeat it or dodge its schema)
    assert not accepts(g, '{"line1":"a","line1":"b"}') and not engine_accepts(g, '{"line1":"a","line1":"b"}')
    assert not accepts(g, '{"line2":"a","line1":"b"}')
    assert engine_accepts(g, '{"line1":"ab","line2":"b"}') and not engine_accepts(g, '{"line1":"abcd"}')
    check(
        {"properties": {"a": {"minimum": 2}}, "patternProperties": {".*": {"type": "integer"}}},
        valid=[{"a": 2}, {"a": 3, "b": 1}, {"b": -1}],
        invalid=[{"a": 1}, {"a": 2.5}, {"a": 3, "b": "x"}],
    )


def test_property_names():
    schema = {
        "type": "object",
        "properties": {"ab": {"type": "integer"}, "Xy": {"type": "integer"}},
        "additionalProperties": {"type": "boolean"},
        "propertyNames": {"pattern": "^[a-z]+(-[a-z]+)*$", "maxLength": 3},
    }
    with pytest.raises(UnsupportedFeatureError) as exc:  # a length lookahead inside: not yet
        schema_to_lark(schema)
    assert exc.value.feature == "propertyNames"
    schema["propertyNames"] = {"pattern": "^[a-z]+$"}
    g = check(
        schema,
        valid=[{}, {"ab": 1}, {"ab": 1, "cd": True}, {"zzz": False}],
        invalid=[{"Xy": 1}, {"A": True}, {"ab": True}, {"a1": True}],
    )
    assert engine_accepts(g, '{"ab":1,"cd":true}') and not engine_accepts(g, '{"Cd":true}')
    assert not engine_accepts(g, '{"ab":1,"ab":true}')  # a listed name is never an extra key
    # a required name that propertyNames forbids: no object at all
    g = schema_to_lark({"type": ["object", "null"], "required": ["A"], "propertyNames": {"maxLength": 0}}).lark_text
    assert accepts(g, "null") and not accepts(g, '{"A":1}') and not accepts(g, "{}")
    check({"type": "object", "propertyNames": {"enum": ["x", "y"]}, "patternProperties": {"^[xz]$": {"type": "integer"}}},
          valid=[{}, {"x": 1}], invalid=[{"z": 1}, {"x": "a"}])
    check({"type": "object", "propertyNames": False}, valid=[{}], invalid=[{"a": 1}])
    check({"type": "object", "propertyNames": {"type": "string"}}, valid=[{"a": 1}, {}])


def test_object_branches_whose_keys_collide_in_the_lexer_are_refused():
    """An any-key object beside an object whose first key is "c": both key terminals match "c",
    the lexer takes one without the parser's say and `{"c":1}` was rejected although valid (found
    by the fuzz suite). Strict mode refuses it; lenient mode widens the objects with a warning."""
    schema = {
        "anyOf": [
            {"type": "integer", "exclusiveMinimum": 0},
            {"type": "object", "additionalProperties": {"type": "null"}},
            {"type": "object", "required": ["c"]},
        ]
    }
    with pytest.raises(UnsupportedFeatureError, match="both match some text") as exc:
        schema_to_lark(schema)
    assert exc.value.feature == "anyOf" and exc.value.where == "/anyOf"
    with pytest.warns(GuideSchemaWarning, match="/anyOf"):
        js = json_schema(schema, strict=False)
    assert accepts(js.lark_text, '{"c":1}') and accepts(js.lark_text, '{"a":null}') and accepts(js.lark_text, "3")


def test_keys_matching_no_pattern_take_additional_properties():
    """Next to patternProperties, a key that is not listed and matches no pattern is an extra
    key under additionalProperties (a product with the complement of each pattern)."""
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "patternProperties": {"^[a-f0-9]+$": {"type": "array"}},
        "additionalProperties": {"type": "integer"},
    }
    text = schema_to_lark(schema).lark_text
    for ok in ['{"project1":1}', '{"ab":[]}', '{"name":"x","zz":3}', '{"name":"x","ab":[1],"q":2}']:
        assert accepts(text, ok), ok
    for bad in ['{"project1":[1]}', '{"ab":1}', '{"name":1}', '{"zz":"s"}']:
        assert not accepts(text, bad), bad
    closed = schema_to_lark({**schema, "additionalProperties": False}).lark_text
    assert accepts(closed, '{"ab":[]}') and not accepts(closed, '{"project1":1}')


# ----------------------------------------------------------------------------- oneOf exclusivity


def test_oneof_branches_are_intersected_with_the_parent_type():
    # the branches put no constraint on strings, but the parent allows only objects
    s = {"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}
    check(s, valid=[{"a": 1}, {"b": 1}], invalid=[{"a": 1, "b": 2}, {}, "x"])


def test_oneof_drops_a_type_two_branches_accept_entirely():
    # strings satisfy both branches, so no string satisfies oneOf (exact)
    s = {"oneOf": [{"required": ["a"]}, {"required": ["b"]}]}
    check(s, valid=[{"a": 1}, {"b": 1}], invalid=["x", 1, None, [], {}, {"a": 1, "b": 2}])
    # two equal branches: nothing they accept is valid
    same = {"oneOf": [{"type": "string"}, {"type": "string"}, {"type": "integer"}]}
    check(same, valid=[1], invalid=["x", 1.5])


def test_oneof_of_finite_branches_is_decided_by_value():
    check(
        {"oneOf": [{"enum": ["Open"]}, {"enum": ["Fulfilled"]}]},
        valid=["Open", "Fulfilled"],
        invalid=["Other", 1],
    )
    # a value in two finite branches is dropped from both (exact)
    check(
        {"oneOf": [{"enum": ["a", "b"]}, {"enum": ["b", "c"]}]},
        valid=["a", "c"],
        invalid=["b", "d"],
    )
    # a finite branch against a general one: disjoint when no value of it validates the other
    check(
        {"oneOf": [{"enum": ["a", "b"]}, {"type": "string", "minLength": 2}]},
        valid=["a", "abc"],
        invalid=["", 1],
    )
    with pytest.raises(UnsupportedFeatureError):  # "ab" satisfies both
        schema_to_lark({"oneOf": [{"enum": ["a", "ab"]}, {"type": "string", "minLength": 2}]})


def test_oneof_arrays_with_disjoint_items_overlap_only_on_the_empty_array():
    s = {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "number"}},
            {"type": "array", "items": {"type": "string"}},
        ]
    }
    check(s, valid=["x", [1, 2], ["a"]], invalid=[[], [1, "a"], None])
    # when one branch already needs an item, [] satisfies only the other one
    t = {
        "oneOf": [
            {"type": "array", "items": {"type": "number"}, "minItems": 1},
            {"type": "array", "items": {"type": "string"}},
        ]
    }
    check(t, valid=[[], [1], ["a"]], invalid=[[1, "a"]])


def test_oneof_object_witnesses():
    # a discriminator that neither branch requires is required (an under-approximation)
    s = {
        "type": "object",
        "oneOf": [
            {"properties": {"kind": {"enum": ["a"]}, "x": {"type": "integer"}}},
            {"properties": {"kind": {"enum": ["b"]}, "y": {"type": "string"}}},
        ],
    }
    g = check(
        s,
        valid=[{"kind": "a", "x": 1}, {"kind": "b", "y": "z"}, {"kind": "a", "y": "z"}],
        invalid=[{}, {"x": 1}],
    )
    assert oracle(s, {"x": 1, "y": 2}) and not accepts(g, dump({"x": 1, "y": 2}))  # left out
    # a closed branch without a key the other one requires: disjoint (exact)
    closed = {
        "oneOf": [
            {
                "type": "object",
                "properties": {"a": {}, "m": {"const": 1}},
                "additionalProperties": False,
            },
            {"type": "object", "properties": {"b": {}, "m": {"const": 2}}, "required": ["b", "m"]},
        ]
    }
    check(closed, valid=[{}, {"a": 1, "m": 1}, {"b": 1, "m": 2}], invalid=[{"b": 1}, {"m": 3}])
    # a discriminator inside a required sub-object, and branches behind allOf and $ref
    nested = {
        "$defs": {
            "base": {"type": "object", "properties": {"v": {"type": "integer"}}},
            "k": {
                "type": "object",
                "properties": {"sys": {"const": "rpm"}},
                "required": ["sys"],
            },
        },
        "oneOf": [
            {
                "allOf": [{"$ref": "#/$defs/base"}],
                "properties": {"a": {"$ref": "#/$defs/k"}},
                "required": ["a"],
            },
            {
                "properties": {
                    "a": {
                        "type": "object",
                        "properties": {"sys": {"const": "deb"}},
                        "required": ["sys"],
                    }
                },
                "required": ["a"],
                "type": "object",
            },
        ],
    }
    check(
        nested,
        valid=[{"a": {"sys": "rpm"}, "v": 1}, {"a": {"sys": "deb"}}],
        invalid=[{"a": {"sys": "x"}}, {"a": {}}, {"a": {"sys": "rpm"}, "v": "x"}],
    )


def test_allof_merges_ignore_annotations_and_unknown_keywords():
    s = {
        "allOf": [
            {"type": "object", "x-taplo": {"a": 1}, "markdownDescription": "one"},
            {"properties": {"n": {"type": "integer"}}, "x-taplo": {"b": 2}, "description": "two"},
        ]
    }
    check(s, valid=[{}, {"n": 1}], invalid=[{"n": "x"}, 1])


def test_dependent_required_every_subset():
    s = {
        "type": "object",
        "properties": {k: {"type": "integer"} for k in "abcd"},
        "dependentRequired": {"c": ["a"], "a": ["d"], "b": ["c", "a"]},
    }
    for order in ("schema", "any"):
        g = schema_to_lark(s, property_order=order).lark_text
        for mask in range(16):
            inst = {k: 1 for i, k in enumerate("abcd") if mask >> i & 1}
            assert accepts(g, dump(inst)) == oracle(s, inst), (order, inst)
    # a dependency on a key that is required anyway, or that a closed object never has
    check(
        {
            "type": "object",
            "properties": {"a": {}, "b": {}},
            "required": ["b"],
            "dependentRequired": {"a": ["b"], "zz": ["a"]},
            "additionalProperties": False,
        },
        valid=[{"b": 1}, {"a": 1, "b": 2}],
        invalid=[{"a": 1}],
    )
    # the needed key can never appear: neither can the trigger
    check(
        {
            "type": "object",
            "properties": {"a": {}, "b": False},
            "dependentRequired": {"a": ["b"]},
        },
        valid=[{}, {"c": 1}],
        invalid=[{"a": 1}],
    )
    with pytest.raises(UnsupportedFeatureError) as exc:  # an extra key may trigger it
        schema_to_lark({"type": "object", "dependentRequired": {"a": ["b"]}})
    assert exc.value.where == "/dependentRequired/a"


def test_dependent_schemas_with_properties_and_required():
    s = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string"},
            "website": {"type": "string"},
            "x": {"type": "integer"},
        },
        "required": ["id"],
        "dependencies": {
            "website": {"properties": {"type": {"enum": ["section"]}}, "required": ["x"]}
        },
    }
    g = schema_to_lark(s).lark_text
    for t in (None, "section", "other"):
        for w in (None, "w"):
            for x in (None, 1):
                inst = {"id": "i"}
                if w:  # the trigger is listed before the property its schema constrains
                    inst["website"] = w
                if t:
                    inst["type"] = t
                if x:
                    inst["x"] = x
                assert accepts(g, dump(inst)) == oracle(s, inst), inst
    with pytest.raises(UnsupportedFeatureError):
        schema_to_lark(
            {
                "type": "object",
                "properties": {"a": {}},
                "dependentSchemas": {"a": {"minProperties": 2}},
            }
        )


def test_anyof_of_closed_objects_is_one_union_rule():
    # each branch alone is fine, but together they overlap on every shared prefix (an LALR
    # conflict when compiled branch by branch); one rule over the union of keys decides each
    # key once and keeps every branch's own key order
    s = {
        "required": ["image"],
        "anyOf": [
            {
                "additionalProperties": False,
                "properties": {"context": {"type": "string"}, "image": {"type": "string"}},
            },
            {
                "additionalProperties": False,
                "properties": {
                    "context": {"type": "string"},
                    "docker": {"type": "integer"},
                    "image": {"type": "string"},
                },
            },
            {
                "additionalProperties": False,
                "properties": {
                    "bazel": {"type": "integer"},
                    "context": {"type": "string"},
                    "image": {"type": "string"},
                },
                "required": ["bazel"],
            },
        ],
    }
    check(
        s,
        valid=[
            {"image": "i"},
            {"context": "c", "docker": 1, "image": "i"},
            {"bazel": 1, "context": "c", "image": "i"},
            "not an object",
            3,
        ],
        invalid=[
            {"context": "c"},
            {"bazel": 1, "docker": 1, "image": "i"},
            {"docker": "x", "image": "i"},
            {"image": "i", "other": 1},
        ],
    )


def test_unique_items_over_a_few_scalar_values():
    pool = ["a", "b", "c", 1, True, False, None]
    for s in (
        {
            "type": "array",
            "uniqueItems": True,
            "items": {"enum": ["a", "b", 1, 1.0]},
            "maxItems": 3,
        },
        {
            "type": "array",
            "uniqueItems": True,
            "items": {"type": ["boolean", "null"]},
            "minItems": 1,
        },
    ):
        g = schema_to_lark(s).lark_text
        for n in range(5):
            for inst in itertools.product(pool, repeat=n):
                assert accepts(g, dump(list(inst))) == oracle(s, list(inst)), (s, inst)
    check(
        {"type": "array", "uniqueItems": True, "maxItems": 1},
        valid=[[], [{"a": 1}]],
        invalid=[[1, 2]],
    )
    with pytest.raises(UnsupportedFeatureError):  # strings in general: not context-free
        schema_to_lark({"type": "array", "uniqueItems": True, "items": {"type": "string"}})


def test_anyof_of_open_objects_that_differ_in_required():
    s = {
        "properties": {"d": {"type": "string"}, "c": {"type": "string"}, "a": {"type": "array"}},
        "additionalProperties": {"type": "integer"},
        "anyOf": [{"required": ["d", "c"]}, {"required": ["d", "a"]}],
    }
    check(
        s,
        valid=[
            {"d": "x", "c": "y"},
            {"d": "x", "a": []},
            {"d": "x", "c": "y", "a": [], "z": 1},
            "s",
        ],
        invalid=[
            {"d": "x"},
            {"c": "y", "a": []},
            {"d": "x", "c": "y", "z": "no"},
            {"d": 1, "c": "y"},
        ],
    )


def test_max_properties_one():
    for s in (
        {
            "type": "object",
            "additionalProperties": {"enum": [False]},
            "minProperties": 1,
            "maxProperties": 1,
        },
        {"type": "object", "properties": {"a": {"type": "integer"}, "b": {}}, "maxProperties": 1},
        {
            "type": "object",
            "properties": {"a": {"type": "integer"}},
            "required": ["a"],
            "maxProperties": 1,
        },
    ):
        g = schema_to_lark(s).lark_text
        for n in range(3):
            for ks in itertools.permutations(["a", "b", "zz"], n):
                for v in (False, 1):
                    inst = dict.fromkeys(ks, v)
                    assert accepts(g, dump(inst)) == oracle(s, inst), (s, inst)


def test_anyof_arrays_with_disjoint_items():
    s = {
        "anyOf": [
            {"type": "array", "items": {"type": "number"}},
            {
                "type": "array",
                "items": {"type": "object", "properties": {"y": {"type": "integer"}}},
            },
        ]
    }
    check(s, valid=[[], [1, 2.5], [{"y": 1}]], invalid=["x", [1, {"y": 1}], [{"y": "no"}]])


def test_allof_merges_nested_allof_and_type_nots():
    s = {
        "allOf": [
            {"allOf": [{"type": ["string", "integer", "null"]}], "not": {"type": "null"}},
            {"allOf": [{"maxLength": 2}], "not": {"type": "integer"}},
        ]
    }
    check(s, valid=["ab"], invalid=["abc", 1, None, True])


def test_oneof_dropped_values_still_count_against_the_other_branches():
    # the two equal branches accept nothing, yet "a" satisfies both and the third: invalid
    s = {
        "oneOf": [
            {"type": "string", "maxLength": 1},
            {"type": "string", "maxLength": 1},
            {"type": "string"},
        ]
    }
    with pytest.raises(UnsupportedFeatureError):
        schema_to_lark(s)
    # two branches accept every string: no string is valid, whatever a third branch says
    t = {"oneOf": [{"required": ["a"]}, {"required": ["b"]}, {"type": "string", "maxLength": 3}]}
    check(t, valid=[{"a": 1}], invalid=["ab", "abcd", {"a": 1, "b": 2}])


def test_oneof_anyof_regressions_found_by_fuzzing():
    pool = ["a", "b", 1, None, True, [], {}, {"a": 1}, {"a": 2}, {"b": "x"}, {"c": 1}]
    for s in (
        # branch types disjoint from the parent's: no value at all
        {"anyOf": [{"type": "null"}, {"type": "string"}], "type": "object"},
        {
            "anyOf": [{"type": "object", "additionalProperties": False}, {"type": "null"}],
            "type": "string",
        },
        # the equal finite branches accept nothing, and "a" also satisfies the general branch
        {
            "oneOf": [
                {"enum": ["a", "b"]},
                {"properties": {"a": {"const": 2}}},
                {"enum": ["a", "b"]},
            ]
        },
    ):
        try:
            g = schema_to_lark(s).lark_text
        except UnsupportedFeatureError:
            continue
        for v in pool:
            assert not accepts(g, dump(v)) or oracle(s, v), (s, v)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "minLength": 1, "not": {"enum": ["upstart", "a/b", "1"]}},
        {"not": {"pattern": "^[0-9]+$"}},
        {"type": ["string", "integer"], "not": {"type": "string", "pattern": "x|/"}},
        {"type": "string", "not": {"const": "é"}},
    ],
)
def test_not_of_string_values_or_pattern_never_accepts_an_excluded_spelling(schema):
    """`not: {enum|const|pattern}` on strings: negative lookaheads, with the kept strings limited to
    the spellings the exclusion sees, so a \\uXXXX spelling of an excluded value cannot pass."""
    text = schema_to_lark(schema).lark_text
    rng = random.Random(5)
    chars = ["u", "p", "s", "t", "a", "r", "/", "b", "1", "x", "é", "\n"]

    def spell(ch):
        forms = [json.dumps(ch, ensure_ascii=False)[1:-1], "\\u%04x" % ord(ch), "\\u%04X" % ord(ch)]
        if ch == "/":
            forms.append("\\/")
        return rng.choice(forms)

    seen_ok = 0
    words = ["upstart", "a/b", "1", "é", "x", "ab", "12"]
    for _ in range(600):
        word = rng.choice(words) if rng.random() < 0.5 else "".join(rng.choice(chars) for _ in range(rng.randint(0, 4)))
        doc = '"' + "".join(spell(c) for c in word) + '"'
        ok = accepts(text, doc)
        assert not ok or oracle(schema, word), doc  # sound: an accepted spelling is valid
        seen_ok += ok
        canonical = json.dumps(word, ensure_ascii=False)
        assert accepts(text, canonical) == oracle(schema, word), canonical  # exact on the canonical spelling
    for value in (3, None, [1]):
        assert accepts(text, json.dumps(value)) == oracle(schema, value), value
    assert seen_ok > 50


def test_a_pattern_that_takes_every_key_leaves_no_extra_key_terminal():
    """patternProperties ".*" next to additionalProperties: no key is left for the latter, and an
    empty key terminal would stop guide's lexer (lark takes one); `not` of every string likewise."""
    from guide.testing import toy_vocab

    schema = {"type": "object", "patternProperties": {".*": {"type": "integer"}}, "additionalProperties": {"type": "string"}}
    js = json_schema(schema)
    assert accepts(js.lark_text, '{"a":1}') and not accepts(js.lark_text, '{"a":"s"}')
    js.compile(toy_vocab())  # builds in guide's engine (EmptyLanguageError before)
    only_nonstrings = json_schema({"type": ["string", "integer"], "not": {"type": "string", "pattern": ""}})
    assert accepts(only_nonstrings.lark_text, "3") and not accepts(only_nonstrings.lark_text, '"a"')
    only_nonstrings.compile(toy_vocab())


def test_additional_keys_may_be_spelled_with_escapes_but_never_a_listed_one():
    """The terminal for keys other than the listed ones decides on the decoded key: a key spelled
    with escapes is additional exactly when it decodes to no listed name (it used to be cut at
    an escape, which also doubled the product lexer against each counted string)."""
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 40}, "nb": {"type": "string"}, "a/\"b": {"type": "string"}},
        "additionalProperties": {"type": "integer"},
    }
    g = schema_to_lark(schema).lark_text
    # without length bounds the raw-only form (faster to build): escaped keys are not taken as
    # additional ones, and never is a listed name whatever its spelling
    plain = {**schema, "properties": {**schema["properties"], "name": {"type": "string"}}}
    g_raw = schema_to_lark(plain).lark_text
    assert engine_accepts(g_raw, '{"x":1}') and not engine_accepts(g_raw, '{"\\u0078":1}')
    assert not engine_accepts(g_raw, '{"\\u006eame":1}') and not accepts(g_raw, '{"n\\u0061me":1}')
    ok = ['{"\\u0078":1}', '{"\\u006e":1}', '{"n\\u0061m":1}', '{"\\u006eamex":1}', '{"\\n":1}',
          '{"\\ud83d\\ude00":1}', '{"\\u006E\\u0063":1}', '{"a\\/":1}', '{"a\\/\\"":1}', '{"\\\\":1}',
          '{"name":"v","\\u0078":1}']
    bad = ['{"\\u006eame":1}', '{"na\\u006De":1}', '{"\\u006E\\u0062":1}', '{"n\\u0062":1}',
           '{"a\\/\\"b":1}', '{"a\\u002f\\u0022b":1}', '{"name":"v","n\\u0061me":1}']
    for text in ok:
        assert oracle(schema, json.loads(text)), text
        assert accepts(g, text) and engine_accepts(g, text), text
    for text in bad:
        assert not oracle(schema, json.loads(text)), text
        assert not accepts(g, text) and not engine_accepts(g, text), text


def test_excluded_keys_do_not_multiply_a_counted_string_in_the_lexer():
    """A maxLength string next to additionalProperties: the product lexer stays about the size of
    the counted string's own automaton (it was twice that and more with each excluded-keys
    terminal that died on an escape)."""
    from guide.grammars.cfg import Grammar

    schema = {
        "type": "object",
        "properties": {"ref": {"type": "string", "maxLength": 60},
                       "owner": {"type": "object", "properties": {"login": {"type": "string"}}},
                       "repo": {"type": "object", "properties": {"name": {"type": "string"}}}},
    }
    g = Grammar(schema_to_lark(schema).lark_text)
    assert g._lexer.trans.shape[0] < 1.3 * 20 * 60, g._lexer.trans.shape


@pytest.mark.parametrize(("mn", "mx"), [(0, 700), (300, 700), (129, 513), (600, 640)])
def test_long_bounded_string_is_lexed_in_chunks_exactly(mn, mx):
    """maxLength above _CHUNK_ABOVE: the string is lexed as `"` + chunks of _CHUNK code points +
    the last piece with its quote, the count of chunks kept by rules. Exactly mn..mx code points
    pass, whatever units (raw, multi-byte, escapes, surrogate pairs) fall at the chunk borders,
    both under lark and through the engine's longest-match lexer."""
    from guide.grammars.json_schema import _CHUNK, _CHUNK_ABOVE

    assert mx > _CHUNK_ABOVE
    schema = {"type": "object", "properties": {"a": {"type": "string", "minLength": mn, "maxLength": mx},
                                               "b": {"type": "integer"}}}
    g = schema_to_lark(schema).lark_text
    assert "{%d}" % _CHUNK in g and "{0,%d}" % mx not in g and "{%d,%d}" % (mn, mx) not in g
    units = ["a", "é", "😀", "\\n", "\\u00e9", "\\ud83d\\ude00", '\\"', "\\\\", "1", "\\/"]
    rng = random.Random(mn * 1000 + mx)
    sizes = sorted({0, 1, mn - 1, mn, mn + 1, mx - 1, mx, mx + 1, _CHUNK - 1, _CHUNK, _CHUNK + 1,
                    2 * _CHUNK, 2 * _CHUNK + 1, 3 * _CHUNK, 4 * _CHUNK, 5 * _CHUNK, 5 * _CHUNK + 1} - {-1})
    for n in sizes:
        for trial in range(2):
            body = "".join(rng.choice(units) for _ in range(n))
            text = '{"a":"' + body + ('","b":7}' if trial else '"}')
            want = oracle(schema, json.loads(text))
            assert want == (mn <= n <= mx)
            assert accepts(g, text) == want and engine_accepts(g, text) == want, (n, trial)


def test_excluded_keys_fall_back_to_raw_spelling_when_the_exact_form_is_too_long():
    """Many long listed names: the escape-aware regex would pass MAX_TERMINAL_CHARS, so the
    terminal keeps the raw-only form (sound: a listed name spelled with escapes is still no
    additional key) instead of failing the schema."""
    from guide.grammars.json_schema import MAX_TERMINAL_CHARS, _key_excluding

    rng = random.Random(1)
    names = {"".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(30)) for _ in range(40)}
    exact = _key_excluding(names)
    assert len(exact) <= MAX_TERMINAL_CHARS and exact == _key_excluding(names, raw=True)
    assert len(_key_excluding(set(sorted(names)[:3]))) > len(_key_excluding(set(sorted(names)[:3]), raw=True))
    first = sorted(names)[0]
    schema = {"type": "object", "properties": {first: {"type": "integer"}},
              "additionalProperties": {"type": "string"}}
    g = schema_to_lark(schema).lark_text
    assert accepts(g, '{"other":"x"}') and not accepts(g, '{"other":1}')
    assert not accepts(g, '{"\\u%04x%s":"x"}' % (ord(first[0]), first[1:]))


def test_additional_keys_beside_patterns_cannot_hide_a_match_in_escapes():
    """patternProperties decide on the decoded key; the grammar's lookaheads see its spelling.
    `"x\\u0061"` decodes to "xa", which matches ^xa: its value must be an integer, so it may not
    pass as an additional (string-valued) key through its escape."""
    for schema in (
        {"type": "object", "patternProperties": {"^xa": {"type": "integer"}}, "additionalProperties": {"type": "string"}},
        {"type": "object", "properties": {"q": {"type": "integer"}}, "patternProperties": {"^xa": {"type": "integer"}},
         "additionalProperties": {"type": "string"}},
    ):
        g = schema_to_lark(schema).lark_text
        for text in ['{"x\\u0061":"s"}', '{"\\u0078a":"s"}', '{"x\\u0061b":"s"}']:
            assert not oracle(schema, json.loads(text)), text
            assert not accepts(g, text) and not engine_accepts(g, text), text
        for text in ['{"xa":1}', '{"yb":"s"}', '{"xab":2,"y":"s"}']:
            assert oracle(schema, json.loads(text)), text
            assert accepts(g, text) and engine_accepts(g, text), text


def test_grammar_text_does_not_depend_on_the_hash_seed():
    """The grammar text is a cache key (compile cache, lark's table cache): the same schema has
    to give the same text in every process, whatever order its sets iterate in."""
    import subprocess
    import sys

    schema = {"type": "object", "properties": {k: {"type": "integer"} for k in ("alpha", "beta", "gamma", "delta", "eps")},
              "additionalProperties": {"type": "string"}}
    code = ("import json, sys; from guide.grammars.json_schema import schema_to_lark; "
            "print(schema_to_lark(json.loads(sys.argv[1])).lark_text)")
    texts = {
        subprocess.run([sys.executable, "-c", code, json.dumps(schema)], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2", "3")
    }
    assert len(texts) == 1 and "start" in next(iter(texts))


def test_lone_surrogates_are_written_escaped():
    """A property name or enum string with a lone surrogate (valid JSON: `"\\ud800"`) cannot be
    written raw in UTF-8: guide writes it as a lowercase \\u escape (it failed as a key that
    matches no string)."""
    from guide.grammars.cfg import Grammar

    schema = {"type": "object", "properties": {"a\ud800": {"enum": ["x\udc00", "y"]}},
              "required": ["a\ud800"], "additionalProperties": {"type": "integer"}}
    g = Grammar(schema_to_lark(schema).lark_text)
    assert g.parses('{"a\\ud800":"x\\udc00"}') and g.parses('{"a\\ud800":"y","b":1}')
    assert not g.parses('{"a\\ud800":"x\\udc00","a\\ud800":1}')  # the listed name is no extra key
    assert not g.parses('{"a\\ud800":"x"}')
