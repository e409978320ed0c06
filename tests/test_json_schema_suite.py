"""The official JSON-Schema-Test-Suite (draft2020-12 and draft7) against `schema_to_lark`.

For every case that compiles in strict mode, every invalid instance must be rejected by lark
(LALR, contextual lexer) with the generated grammar, and every valid instance (serialized
compactly, object keys in the order the grammar expects) must be accepted, except the listed,
documented restrictions. The strict compile rate must stay >= 70%.
"""

from __future__ import annotations

import collections
import glob
import json
import os

import lark
import lark.lexer
import pytest

from guide.errors import GrammarError, UnsupportedFeatureError
from guide.grammars.json_schema import schema_to_lark

SUITE = "/work/shared/data/JSON-Schema-Test-Suite/tests"
DRAFTS = {"draft2020-12": None, "draft7": "http://json-schema.org/draft-07/schema#"}

# Valid instances that the grammar rejects on purpose (documented in docs/json_schema.md):
# (file, case description, test description)
KNOWN_REJECTS = {
    # anyOf is compiled branch by branch: properties evaluated by two matching branches at once
    # are not seen together by unevaluatedProperties (under-acceptance, never over-acceptance).
    (
        "unevaluatedProperties.json",
        "unevaluatedProperties with anyOf",
        "when two match and has no unevaluated properties",
    ),
    # format is an annotation by default in these drafts; guide enforces it.
    *(
        ("format.json", f"{f} format", f"invalid {f} string is only an annotation by default")
        for f in (
            "email",
            "ipv4",
            "ipv6",
            "hostname",
            "date",
            "date-time",
            "time",
            "uri",
            "uuid",
            "duration",
            "idn-email",
            "idn-hostname",
            "iri",
            "iri-reference",
            "uri-reference",
            "uri-template",
            "json-pointer",
            "relative-json-pointer",
            "regex",
        )
    ),
}


def _resolve(root, ref):
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    node = root
    for tok in ref[1:].split("/")[1:]:
        tok = tok.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and tok in node:
            node = node[tok]
        else:
            return None
    return node


def _props_order(schema, inst, root, depth=0) -> list[str]:
    """Property names in the order the grammar lists them (best effort, mirrors the compiler)."""
    if not isinstance(schema, dict) or depth > 20:
        return []
    if "$ref" in schema:
        target = _resolve(root, schema["$ref"])
        own = [] if target is None else _props_order(target, inst, root, depth + 1)
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return list(dict.fromkeys(_props_order(rest, inst, root, depth + 1) + own))
    order = list(schema.get("properties", {})) + [
        k for k in schema.get("required", []) if isinstance(k, str)
    ]
    for sub in schema.get("allOf", []):
        order += _props_order(sub, inst, root, depth + 1)
    for kw in ("anyOf", "oneOf"):
        for sub in schema.get(kw, []):
            order += _props_order(sub, inst, root, depth + 1)
    return list(dict.fromkeys(order))


def _sub_for(schema, key, root, depth=0):
    if not isinstance(schema, dict) or depth > 20:
        return None
    if "$ref" in schema:
        t = _resolve(root, schema["$ref"])
        r = _sub_for(t, key, root, depth + 1)
        if r is not None:
            return r
    if key in schema.get("properties", {}):
        return schema["properties"][key]
    for kw in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(kw, []):
            r = _sub_for(sub, key, root, depth + 1)
            if r is not None:
                return r
    ap = schema.get("additionalProperties")
    return ap if isinstance(ap, dict) else None


def reorder(schema, inst, root):
    if (
        isinstance(schema, dict)
        and ("const" in schema or "enum" in schema)
        and isinstance(inst, dict)
    ):
        for v in [schema["const"]] if "const" in schema else schema["enum"]:
            if isinstance(v, dict) and v == inst:
                return {k: inst[k] for k in v}
    if isinstance(inst, dict):
        order = _props_order(schema, inst, root)
        keys = [k for k in order if k in inst] + [k for k in inst if k not in order]
        return {k: reorder(_sub_for(schema, k, root), inst[k], root) for k in keys}
    if isinstance(inst, list) and isinstance(schema, dict):
        pre = schema.get(
            "prefixItems", schema.get("items") if isinstance(schema.get("items"), list) else []
        )
        items = schema.get("items") if isinstance(schema.get("items"), dict) else None
        return [reorder(pre[i] if i < len(pre) else items, x, root) for i, x in enumerate(inst)]
    return inst


def _cases():
    for draft, uri in DRAFTS.items():
        for path in sorted(glob.glob(os.path.join(SUITE, draft, "*.json"))):
            with open(path, encoding="utf-8") as fh:
                for case in json.load(fh):
                    text = json.dumps(case["schema"])
                    if "localhost:1234" in text or "remote" in case["description"].lower():
                        continue  # remote refs are never fetched
                    schema = case["schema"]
                    if uri and isinstance(schema, dict) and "$schema" not in schema:
                        schema = {**schema, "$schema": uri}
                    yield draft, os.path.basename(path), case, schema


def _parse(parser, text) -> bool:
    try:
        parser.parse(text)
        return True
    except lark.exceptions.LarkError:
        return False


@pytest.mark.skipif(not os.path.isdir(SUITE), reason="JSON-Schema-Test-Suite not available")
def test_json_schema_test_suite(monkeypatch):
    # lark's optional interegular collision report is slow and only logs; skip it here.
    monkeypatch.setattr(lark.lexer, "has_interegular", False)
    stats = collections.Counter()
    errors = collections.Counter()
    bad_accepts, bad_rejects = [], []
    for draft, fname, case, schema in _cases():
        stats["cases"] += 1
        try:
            grammar = schema_to_lark(schema)
        except UnsupportedFeatureError as exc:
            errors[exc.feature] += 1
            continue
        except GrammarError as exc:
            errors["GrammarError"] += 1
            assert "$ref" in str(exc) or "anchor" in str(exc), (fname, case["description"], exc)
            continue
        parser = lark.Lark(grammar.lark_text, parser="lalr", lexer="contextual", start="start")
        stats["compiled"] += 1
        for test in case["tests"]:
            data = test["data"]
            texts = {json.dumps(data, separators=(",", ":"), ensure_ascii=False)}
            texts.add(
                json.dumps(reorder(schema, data, schema), separators=(",", ":"), ensure_ascii=False)
            )
            accepted = [t for t in texts if _parse(parser, t)]
            where = (draft, fname, case["description"], test["description"])
            if not test["valid"]:
                stats["invalid"] += 1
                if accepted:
                    bad_accepts.append((*where, accepted))
            else:
                stats["valid"] += 1
                if accepted:
                    stats["valid_accepted"] += 1
                elif (fname, case["description"], test["description"]) not in KNOWN_REJECTS:
                    bad_rejects.append((*where, sorted(texts)))
    rate = stats["compiled"] / stats["cases"]
    print(
        f"\nJSON-Schema-Test-Suite: {stats['compiled']}/{stats['cases']} schemas compile strict ({rate:.1%}); "
        f"valid accepted {stats['valid_accepted']}/{stats['valid']}; invalid instances {stats['invalid']}, "
        f"wrongly accepted {len(bad_accepts)}"
    )
    print("strict errors by keyword:", dict(errors.most_common()))
    assert not bad_accepts, bad_accepts
    assert not bad_rejects, "\n".join(map(str, bad_rejects))
    assert rate >= 0.70
