"""Hypothesis strategies shared by the JSON Schema tests and the fuzz suite: random schemas over
the keywords the compiler supports, random JSON values, and the jsonschema oracle."""

from __future__ import annotations

import json
import re
from functools import partial

import jsonschema
from hypothesis import strategies as st


def oracle(schema, instance) -> bool:
    cls = (
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        if isinstance(schema, dict)
        else jsonschema.Draft202012Validator
    )
    return cls(schema, format_checker=cls.FORMAT_CHECKER).is_valid(instance)


def dump(x) -> str:
    return json.dumps(x, separators=(",", ":"), ensure_ascii=False)


def leaf_schemas():
    ints = st.integers(-50, 50)
    return st.one_of(
        st.builds(
            lambda a, b: {"type": "integer", "minimum": min(a, b), "maximum": max(a, b)}, ints, ints
        ),
        st.builds(lambda a: {"type": "integer", "exclusiveMinimum": a}, ints),
        st.builds(
            lambda a, b: {
                "type": "number",
                "minimum": min(a, b),
                "exclusiveMaximum": max(a, b) + 1,
            },
            ints,
            ints,
        ),
        st.builds(lambda m: {"type": "integer", "multipleOf": m}, st.integers(1, 7)),
        st.builds(
            lambda a, b: {"type": "string", "minLength": min(a, b), "maxLength": max(a, b)},
            st.integers(0, 4),
            st.integers(0, 4),
        ),
        st.sampled_from(
            [
                {"type": "string", "pattern": p}
                for p in ("^a+b?$", "x", "^[^a-c]{1,3}$", '"', "^\\d+\\.\\d$")
            ]
        ),
        st.sampled_from(
            [
                {"type": "string", "format": f}
                for f in ("date", "time", "uuid", "ipv4", "email", "date-time")
            ]
        ),
        st.lists(
            st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=3)),
            min_size=1,
            max_size=4,
        ).map(lambda v: {"enum": v}),
        st.sampled_from(
            [
                {"type": "boolean"},
                {"type": "null"},
                {"type": "number"},
                {"type": "string"},
                {},
                {"type": ["integer", "null"]},
                {"const": "k"},
            ]
        ),
    )


def extend_schemas(children):
    keys = st.sampled_from(["a", "b", "c", 'd"', "é"])
    return st.one_of(
        st.builds(
            lambda s, a, b: {
                "type": "array",
                "items": s,
                "minItems": min(a, b),
                "maxItems": max(a, b),
            },
            children,
            st.integers(0, 3),
            st.integers(0, 3),
        ),
        st.builds(
            lambda p, s: {"type": "array", "prefixItems": p, "items": s},
            st.lists(children, max_size=2),
            st.one_of(st.just(False), children),
        ),
        st.builds(
            lambda props, req, addl: {
                "type": "object",
                "properties": props,
                "required": [k for k in props if k in req],
                "additionalProperties": addl,
            },
            st.dictionaries(keys, children, max_size=3),
            st.lists(keys, max_size=3),
            st.one_of(st.booleans(), children),
        ),
        st.builds(lambda bs: {"anyOf": bs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda a, b: {"allOf": [a, b]}, children, children),
    )


schemas = st.recursive(leaf_schemas(), extend_schemas, max_leaves=6)



json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-60, 60),
        st.floats(-60, 60, allow_nan=False).map(lambda f: round(f, 2)),
        st.text(alphabet='abcxyé"\\\n-0123456789:.@T', max_size=6),
    ),
    lambda c: st.one_of(
        st.lists(c, max_size=4),
        st.dictionaries(st.sampled_from(["a", "b", "c", 'd"', "é", "z"]), c, max_size=4),
    ),
    max_leaves=8,
)




def instances(schema) -> st.SearchStrategy:
    """Values drawn from a schema of the generator above, independently of guide's compiler. Most
    are valid; allOf branches and formats can miss, so callers keep only what `oracle` accepts."""
    if schema is True or schema == {}:
        return json_values
    if schema is False:
        return st.nothing()
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([instances(b) for b in schema["anyOf"]])
    if "allOf" in schema:
        return st.one_of([instances(b) for b in schema["allOf"]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([instances({**schema, "type": k}) for k in kind])
    if kind == "integer":
        lo = schema.get("minimum", -10**6)
        if "exclusiveMinimum" in schema:
            lo = schema["exclusiveMinimum"] + 1
        hi = schema.get("maximum", 10**6)
        step = schema.get("multipleOf", 1)
        return st.integers(-(-lo // step), hi // step).map(lambda k: k * step)
    if kind == "number":
        # thousandths: Python writes them without an exponent, as guide writes bounded numbers
        lo, hi = schema.get("minimum", -(10**6)), schema.get("exclusiveMaximum")
        top = 10**9 if hi is None else hi * 1000 - 1
        return st.integers(lo * 1000, top).map(lambda k: k // 1000 if k % 1000 == 0 else k / 1000)
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"]).filter(partial(_ecma_search, schema["pattern"]))
        if "format" in schema:
            return FORMAT_VALUES[schema["format"]]
        return st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 8))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        prefix = [instances(s) for s in schema.get("prefixItems", [])]
        items = schema.get("items", True)
        lo, hi = schema.get("minItems", 0), schema.get("maxItems", len(prefix) + 3)
        rest = st.nothing() if items is False else instances(items)
        return st.integers(lo, max(lo, hi)).flatmap(
            lambda n: st.tuples(*prefix[:n], *[rest] * max(0, n - len(prefix))).map(list)
        )
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        addl = schema.get("additionalProperties", True)
        extra_value = st.nothing() if addl is False else instances(addl)
        extra_keys = [k for k in ("z", "ab", "é") if k not in props]
        return st.tuples(
            st.fixed_dictionaries(
                {k: instances(s) for k, s in props.items() if k in required},
                optional={k: instances(s) for k, s in props.items() if k not in required},
            ),
            st.dictionaries(st.sampled_from(extra_keys), extra_value, max_size=2)
            if addl is not False
            else st.just({}),
        ).map(lambda pair: {**pair[0], **pair[1]})
    return json_values


def _ecma_search(pattern: str, s: str) -> bool:
    """Whether an ECMA-262 engine (the spec's, and guide's) would also find `pattern` in `s`: Python
    lets `$` match before a final newline, its \\d \\w \\s are Unicode, `.` takes \\r, U+2028/9."""
    return (
        not s.endswith("\n")
        and not any(c in s for c in "\r\u2028\u2029\ufeff")
        and re.search(pattern, s, re.ASCII) is not None
    )


FORMAT_VALUES = {
    "date": st.dates().map(lambda d: d.isoformat()),
    "time": st.times().map(lambda t: t.isoformat() + "Z"),
    "date-time": st.datetimes().map(lambda d: d.isoformat() + "Z"),
    "uuid": st.uuids().map(str),
    "ipv4": st.ip_addresses(v=4).map(str),
    "email": st.emails(),
}
