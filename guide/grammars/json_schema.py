"""JSON Schema -> lark grammar text, run by the CFG engine (`guide.grammars.cfg.Grammar`).

`schema_to_lark(schema)` gives grammar text whose language (as parsed by lark LALR with the
contextual lexer) is a subset of the JSON texts that validate against `schema`. Strict mode
(the default) raises `UnsupportedFeatureError` naming the keyword and its JSON pointer for every
keyword that would change validity but is not enforced; lenient mode drops it with a warning.
See docs/json_schema.md for the keyword table and the exact choices (property order, extra
properties after the listed ones, number bounds, string escapes, whitespace).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from re import _constants as _sre_c  # type: ignore[attr-defined]
from re import _parser as _sre_parse  # type: ignore[attr-defined]  # Python >= 3.11
from typing import Any, Literal
from urllib.parse import urldefrag, urljoin

from ..constraint import Compiled, Constraint
from ..errors import GrammarError, GuideError, UnsupportedFeatureError

__all__ = [
    "GuideSchemaWarning",
    "JsonSchema",
    "SchemaGrammar",
    "json_schema",
    "json_value",
    "schema_to_lark",
]

MAX_DEPTH = 64  # nesting of subschemas (refs do not count: they become rules)
MAX_RULES = 50_000  # grammar size cap
MAX_TERMINAL_CHARS = 100_000  # one terminal's regex (lark's escaping of a literal is quadratic)
MAX_REPEAT_EXPANSION = 500  # min/maxItems expanded into a chain of rules up to this (lark's
# LALR build is quadratic in the chain: 500 takes ~2 s, 1000 ~12 s)
MAX_STRING_LENGTH_BOUND = 100_000  # min/maxLength (counted repeats in a regex)
MAX_PATTERN_LENGTH_BOUND = 1_000  # min/maxLength together with pattern/format (a length automaton
# intersected with the pattern's: states and compile time grow with the bound)
_CHUNK = 128  # code points per chunk terminal of a long bounded string (Compiler.long_string)
_CHUNK_ABOVE = 512  # maxLength above which a plain bounded string is lexed in chunks
MAX_FRACTIONS = 1_000  # fractional multipleOf: the fraction digit strings a multiple may end in
MAX_ANY_ORDER = 8  # property_order="any" enumerates subsets of at most this many properties
MAX_BRANCHES = 64  # anyOf x anyOf products in allOf merges
MAX_UNIQUE_VALUES = 8  # uniqueItems over at most this many item values (2^n states)
MAX_DEP_KEYS = 10  # properties taking part in dependentRequired (states are subsets of them)

_PRETTY_WS = r"(?:\n {0,64}| )?"

ANNOTATIONS = frozenset(
    [
        "title",
        "description",
        "examples",
        "default",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$schema",
        "$id",
        "id",
        "contentMediaType",
        "contentEncoding",
        "contentSchema",
        "$anchor",
        "$dynamicAnchor",
        "$vocabulary",
        "$defs",
        "definitions",
        "discriminator",
        "nullable",
        "example",
        "externalDocs",
        "xml",
    ]
)
# keyword -> JSON type it constrains (None: any type) for keywords guide does not enforce.
UNSUPPORTED = {
    "uniqueItems": "array",
    "contains": "array",
    "minContains": "array",
    "maxContains": "array",
    "unevaluatedItems": "array",
    "dependentRequired": "object",
    "dependentSchemas": "object",
    "dependencies": "object",
    "unevaluatedProperties": "object",
    "if": None,
    "$dynamicRef": None,
    "$recursiveRef": None,
}
# keywords that can change whether a value is valid: any other keyword (annotations, `x-*`
# extensions, unknown names) is ignored by validators, so two different values of it merge
ASSERTING = frozenset(
    [
        "type", "enum", "const", "multipleOf", "minimum", "maximum", "exclusiveMinimum",
        "exclusiveMaximum", "minLength", "maxLength", "pattern", "format", "items", "prefixItems",
        "additionalItems", "minItems", "maxItems", "properties", "required",
        "additionalProperties", "patternProperties", "minProperties", "maxProperties", "allOf",
        "anyOf", "oneOf", "not", "then", "else", "$ref", "$defs", "definitions",
    ]
) | frozenset(UNSUPPORTED)
_TYPES = ("null", "boolean", "object", "array", "number", "integer", "string")
# keyword -> the JSON type it constrains ("number" also stands for "integer"), for oneOf
_KW_TYPE = {
    **dict.fromkeys(
        ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"), "number"
    ),
    **dict.fromkeys(("minLength", "maxLength", "pattern", "format"), "string"),
    **dict.fromkeys(
        (
            "items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems",
            "contains", "minContains", "maxContains", "unevaluatedItems",
        ),
        "array",
    ),
    **dict.fromkeys(
        (
            "properties", "required", "additionalProperties", "patternProperties",
            "minProperties", "maxProperties", "dependentRequired", "dependentSchemas",
            "dependencies", "propertyNames", "unevaluatedProperties",
        ),
        "object",
    ),
}
# keywords that may constrain a value of any type
_KW_ANY = frozenset(
    ["allOf", "anyOf", "oneOf", "not", "$ref", "if", "then", "else", "enum", "const"]
    + ["$dynamicRef", "$recursiveRef"]
)
_OLD_DRAFTS = ("draft-03", "draft-04", "draft-05", "draft-06", "draft-07")


class GuideSchemaWarning(UserWarning):
    """Lenient mode ignored keywords that change validity (listed with their JSON pointers)."""


@dataclass
class SchemaGrammar:
    lark_text: str
    warnings: list[tuple[str, str, str]] = field(default_factory=list)


# ----------------------------------------------------------------------------- regex helpers

RAW = r'[^"\\\x00-\x1f]'
HEX = "[0-9a-fA-F]"
ESC_FULL = r'\\(?:["\\/bfnrt]|u' + HEX + "{4})"
CHAR_FULL = f"(?:{RAW}|{ESC_FULL})"
JSON_STRING = f'"{CHAR_FULL}*"'
# one decoded code point: raw, short escape, non-surrogate \u, or a surrogate pair.
CHAR_ONE = (
    rf'(?:{RAW}|\\["\\/bfnrt]|\\u(?:[0-9a-cA-CefEF]{HEX}{{3}}|[dD][0-7]{HEX}{{2}})'
    rf"|\\u[dD][89abAB]{HEX}{{2}}\\u[dD][c-fC-F]{HEX}{{2}})"
)
_COUNTED_STRING = re.compile(re.escape(f'"{CHAR_ONE}') + r"\{(\d+),(\d+)\}" + re.escape('"'))
# one decoded code point of a string the pattern/format regexes write (never a lone surrogate
# escape): fewer automaton states than CHAR_ONE, for the length lookahead below.
_LEN_UNIT = r'(?:[^"\\]|\\[^u]|\\u(?:[0-9a-cA-CefEF]' + HEX + "{3}|[dD][0-7]" + HEX + "{2}|[dD][89abAB]" + HEX + r"{2}\\u[dD][c-fC-F]" + HEX + "{2}))"
NUMBER_FULL = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_SHORT_ESC = {
    0x22: "\\\\\\x22",
    0x5C: "\\\\\\\\",
    0x2F: "\\\\/",
    8: "\\\\b",
    12: "\\\\f",
    10: "\\\\n",
    13: "\\\\r",
    9: "\\\\t",
}
MAXCP = 0x10FFFF


def _cp_esc(cp: int) -> str:
    """One code point as regex text that also survives lark's escape evaluation of /regex/ literals.

    lark evaluates \\x, \\u, \\U, \\n, ... into raw characters before compiling, so a special
    ASCII character is written as backslash + character, and a quote as \\x22 (lark turns a
    backslash-quote into a bare quote)."""
    ch = chr(cp)
    if ch.isascii() and ch.isalnum():
        return ch
    if cp in (0x22, 0x2F):
        return f"\\x{cp:02x}"
    if 0x20 <= cp < 0x7F:
        return "\\" + ch
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def _lit(text: str) -> str:
    """A regex matching exactly `text`."""
    return "".join(_cp_esc(ord(c)) for c in text)


def _norm(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _complement(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, prev = [], 0
    for a, b in _norm(ranges):
        if a > prev:
            out.append((prev, a - 1))
        prev = b + 1
    if prev <= MAXCP:
        out.append((prev, MAXCP))
    return out


def _minus(ranges, remove):
    return _intersect(ranges, _complement(remove))


def _intersect(r1, r2):
    out = []
    for a, b in _norm(r1):
        for c, d in _norm(r2):
            lo, hi = max(a, c), min(b, d)
            if lo <= hi:
                out.append((lo, hi))
    return _norm(out)


def _class(ranges: list[tuple[int, int]]) -> str | None:
    """A character class for the code point set, negated when that is shorter."""
    ranges = _norm(ranges)
    if not ranges:
        return None
    comp = _complement(ranges)

    def body(rs):
        return "".join(_cp_esc(a) if a == b else f"{_cp_esc(a)}-{_cp_esc(b)}" for a, b in rs)

    if ranges[-1][1] == MAXCP or len(comp) < len(ranges):  # the shorter spelling: a negated class
        return f"[^{body(comp)}]" if comp else "[\\s\\S]"
    if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return _cp_esc(ranges[0][0])
    return f"[{body(ranges)}]"


_CONTROL = [(0, 0x1F)]
_SPECIAL = [(0x22, 0x22), (0x5C, 0x5C)]


def _encoded_class(ranges: list[tuple[int, int]]) -> str | None:
    """Regex over JSON string *source* matching one encoded character from the decoded set."""
    ranges = _norm(ranges)
    alts = []
    raw = _class(_minus(ranges, _CONTROL + _SPECIAL))
    if raw:
        alts.append(raw)
    for a, b in ranges:
        for cp in range(a, min(b, 0x7F) + 1):
            if cp in _SHORT_ESC:
                alts.append(_SHORT_ESC[cp])
            if cp < 0x20:
                hi, lo = divmod(cp, 16)
                lo_hex = f"{lo:x}"
                lo_cls = f"[{lo_hex}{lo_hex.upper()}]" if lo_hex.isalpha() else lo_hex
                alts.append(f"\\\\u00{hi}{lo_cls}")
            if cp > 0x5C:
                break
    if not alts:
        return None
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


# Classes are chosen to be subsets of both ECMA-262 and Python `re` (what `jsonschema` runs), so
# the grammar never accepts a string either engine would reject.
_PY_SPACE = [
    (9, 13),
    (0x1C, 0x20),
    (0x85, 0x85),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
]
_ECMA_SPACE = [
    (9, 13),
    (0x20, 0x20),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
    (0xFEFF, 0xFEFF),
]
_ASCII_DIGIT = [(0x30, 0x39)]
_ASCII_WORD = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_CATEGORY = {
    "CATEGORY_DIGIT": _ASCII_DIGIT,
    "CATEGORY_WORD": _ASCII_WORD,
    "CATEGORY_SPACE": _intersect(_PY_SPACE, _ECMA_SPACE),
    # negations: ASCII only for \D and \W (Unicode digits / letters differ between the engines)
    "CATEGORY_NOT_DIGIT": _minus([(0, 0x7F)], _ASCII_DIGIT),
    "CATEGORY_NOT_WORD": _minus([(0, 0x7F)], _ASCII_WORD),
    "CATEGORY_NOT_SPACE": _complement(_PY_SPACE + _ECMA_SPACE),
}
_ECMA_DOT = _complement([(10, 10), (13, 13), (0x2028, 0x2029)])


class _PatternError(Exception):
    pass


def _set_of(op, arg) -> list[tuple[int, int]]:
    name = str(op)
    if name == "LITERAL":
        return [(arg, arg)]
    if name == "NOT_LITERAL":
        return _complement([(arg, arg)])
    if name == "ANY":
        return _ECMA_DOT
    if name == "CATEGORY":
        key = str(arg)
        if key not in _CATEGORY:
            raise _PatternError(f"unsupported class {key}")
        return _CATEGORY[key]
    if name == "IN":
        neg, out = False, []
        for iop, iarg in arg:
            iname = str(iop)
            if iname == "NEGATE":
                neg = True
            elif iname == "RANGE":
                out.append(tuple(iarg))
            else:
                out.extend(_set_of(iop, iarg))
        return _complement(out) if neg else _norm(out)
    raise _PatternError(f"unsupported construct {name}")


def _tr_seq(seq) -> str:
    out = []
    for op, arg in seq:
        name = str(op)
        if name in ("LITERAL", "NOT_LITERAL", "ANY", "CATEGORY", "IN"):
            cls = _encoded_class(_set_of(op, arg))
            if cls is None:
                cls = "(?!)"
                raise _PatternError("empty character class")
            out.append(cls)
        elif name == "SUBPATTERN":
            _group, add, dele, p = arg
            if add or dele:
                raise _PatternError("inline flags")
            out.append(f"(?:{_tr_seq(p)})")
        elif name == "BRANCH":
            out.append("(?:" + "|".join(_tr_seq(b) for b in arg[1]) + ")")
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            lo, hi, p = arg
            inner = f"(?:{_tr_seq(p)})"
            if hi == _sre_c.MAXREPEAT:
                out.append(inner + ("*" if lo == 0 else "+" if lo == 1 else f"{{{lo},}}"))
            else:
                out.append(inner + ("?" if (lo, hi) == (0, 1) else f"{{{lo},{hi}}}"))
        else:
            raise _PatternError(
                f"unsupported construct {name} (lookaround, backreference or inner anchor)"
            )
    return "".join(out)


def _parse_pattern(pattern: str):
    try:
        parsed = _sre_parse.parse(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        raise _PatternError(f"not a supported regex: {exc}") from None
    if parsed.state.flags & (re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE):
        raise _PatternError("regex flags")
    return parsed


def _is_at(item, *kinds) -> bool:
    return str(item[0]) == "AT" and str(item[1]) in kinds


_BEGIN = ("AT_BEGINNING", "AT_BEGINNING_STRING")
_END = ("AT_END", "AT_END_STRING")


def _anchored_alts(items) -> list[tuple[bool, list, bool]]:
    """A pattern's alternatives as (anchored at the start, items, anchored at the end).

    Anchors count at the start/end of each top-level alternative, also through a group that ends
    the sequence (`^a$|^b$`, `(^x$)|(^y$)`, and `^0(?:1$|7$)`, which is how `re` parses `^01$|^07$`);
    an anchor anywhere else stays in the items (a strict error later)."""
    items = list(items)
    start = bool(items) and _is_at(items[0], *_BEGIN)
    if start:
        items = items[1:]
    if items:
        name, arg = str(items[-1][0]), items[-1][1]
        subs = None
        if name == "BRANCH":
            subs = [alt for sub in arg[1] for alt in _anchored_alts(sub)]
        elif name == "SUBPATTERN" and not arg[1] and not arg[2]:
            subs = _anchored_alts(arg[3])
        head = items[:-1]
        if subs and any(s or e for s, _m, e in subs) and not any(s and head for s, _m, _e in subs):
            return [(start or s, head + m, e) for s, m, e in subs]
    end = bool(items) and _is_at(items[-1], *_END)
    if end:
        items = items[:-1]
    return [(start, items, end)]


def translate_pattern(pattern: str) -> tuple[str, tuple[int, int | None] | None]:
    """ECMA-style `pattern` (a search on the decoded string) -> regex over the JSON string body.

    Returns (body_regex, width) where width is the (min, max) decoded length when the pattern is
    anchored at both ends (None otherwise)."""
    parsed = _parse_pattern(pattern)
    alts = _anchored_alts(parsed)
    bodies = [
        ("" if start else f"{CHAR_FULL}*") + _tr_seq(items) + ("" if end else f"{CHAR_FULL}*")
        for start, items, end in alts
    ]
    width = None
    if all(start and end for start, _items, end in alts):
        widths = [_sre_parse.SubPattern(parsed.state, items).getwidth() for _s, items, _e in alts]
        hi = max(w[1] for w in widths)
        width = (min(w[0] for w in widths), None if hi >= _sre_c.MAXREPEAT else hi)
    return ("(?:" + "|".join(bodies) + ")" if len(bodies) > 1 else bodies[0]), width


def _length_bounded(pattern: str, mn: int, mx: int | None) -> str | None:
    """Body regex for an anchored pattern under length bounds [mn, mx], when expressible.

    Handles `^...$` patterns (one branch) whose items all have a fixed width except at most one
    repeat of a single-character item: the bounds then move onto that repeat. None otherwise."""
    parsed = _parse_pattern(pattern)
    items = list(parsed)
    if not (
        len(items) >= 2
        and _is_at(items[0], "AT_BEGINNING")
        and _is_at(items[-1], "AT_END", "AT_END_STRING")
    ):
        return None
    items = items[1:-1]
    fixed, var = 0, None
    for i, item in enumerate(items):
        w = _sre_parse.SubPattern(parsed.state, [item]).getwidth()
        if w[0] == w[1]:
            fixed += w[0]
            continue
        op, arg = item
        if var is not None or str(op) != "MAX_REPEAT" or len(arg[2]) != 1:
            return None
        iop, _iarg = next(iter(arg[2]))
        if str(iop) not in ("LITERAL", "NOT_LITERAL", "ANY", "CATEGORY", "IN"):
            return None
        var = i
    if var is None:
        return None
    op, (a, b, sub) = items[var]
    iop, iarg = next(iter(sub))
    b = None if b == _sre_c.MAXREPEAT else b
    lo = max(a, mn - fixed)
    hi = b if mx is None else (mx - fixed if b is None else min(b, mx - fixed))
    if hi is not None and lo > hi:
        return "(?!)"
    cls = _encoded_class(_set_of(iop, iarg))
    rep = f"(?:{cls}){{{lo},{'' if hi is None else hi}}}"
    head = _tr_seq(items[:var])
    tail = _tr_seq(items[var + 1 :])
    return head + rep + tail


def _bounded_ws(ws: str) -> None:
    try:
        parsed = _sre_parse.parse(ws)
    except re.error as exc:
        raise GrammarError(f"whitespace pattern {ws!r} is not a regex: {exc}") from None

    def walk(seq):
        for op, arg in seq:
            name = str(op)
            if name in ("MAX_REPEAT", "MIN_REPEAT"):
                if arg[1] == _sre_c.MAXREPEAT:
                    raise GrammarError(
                        f"whitespace pattern {ws!r} is unbounded; use a bounded repeat like {{0,8}}"
                    )
                walk(arg[2])
            elif name == "SUBPATTERN":
                walk(arg[-1])
            elif name == "BRANCH":
                for b in arg[1]:
                    walk(b)

    walk(parsed)
    if re.search(r"[^ \t\n\r]", "".join(chr(c) for c in range(1, 128) if re.fullmatch(ws, chr(c)))):
        raise GrammarError(f"whitespace pattern {ws!r} matches non-whitespace characters")


# ----------------------------------------------------------------------------- numbers

Z, NZ, ANYF = 1, 2, 3  # fraction kinds: zero fraction (or none), nonzero fraction, any


def _same_len(a: str, b: str) -> list[str]:
    if a == b:
        return [a]
    i = 0
    while a[i] == b[i]:
        i += 1
    p, x, y, ra, rb = a[:i], a[i], b[i], a[i + 1 :], b[i + 1 :]
    n = len(ra)
    if n == 0:
        return [p + (f"[{x}-{y}]" if x != y else x)]
    out = []
    lo_full, hi_full = ra == "0" * n, rb == "9" * n
    start = x if lo_full else chr(ord(x) + 1)
    end = y if hi_full else chr(ord(y) - 1)
    if not lo_full:
        out += [p + x + s for s in _same_len(ra, "9" * n)]
    if start <= end:
        d = start if start == end else f"[{start}-{end}]"
        out.append(p + d + f"[0-9]{{{n}}}" if n > 1 else p + d + "[0-9]")
    if not hi_full:
        out += [p + y + s for s in _same_len("0" * n, rb)]
    return out


def _int_alts(lo: int, hi: int | None) -> list[tuple[float, str]]:
    """Alternatives (digit count, regex) for the non-negative integers in [lo, hi]."""
    out: list[tuple[float, str]] = []
    if hi is not None and hi < lo:
        return out
    if lo == 0:
        out.append((1, "0"))
        lo = 1
        if hi == 0:
            return out
    top = len(str(hi)) if hi is not None else len(str(lo))
    for n in range(len(str(lo)), top + 1):
        a, b = max(lo, 10 ** (n - 1)), min(hi, 10**n - 1) if hi is not None else 10**n - 1
        if a <= b:
            out += [(n, s) for s in _same_len(str(a), str(b))]
    if hi is None:
        out.append((math.inf, f"[1-9][0-9]{{{top},}}"))
    return out


_FRAC = {Z: r"(?:\.0+)?", NZ: r"\.[0-9]*[1-9][0-9]*", ANYF: r"(?:\.[0-9]+)?"}


@dataclass
class NumSet:
    """A set of JSON numbers: magnitude pieces (lo, hi, kinds) per sign, or everything."""

    full: bool = False
    pos: list = field(default_factory=list)
    neg: list = field(default_factory=list)
    literals: list = field(default_factory=list)
    # (integer part, fraction regex) for the integer parts next to a non-integral bound
    pos_x: list = field(default_factory=list)
    neg_x: list = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.full or self.pos or self.neg or self.literals or self.pos_x or self.neg_x)

    def union(self, other: NumSet) -> NumSet:
        return NumSet(
            self.full or other.full,
            self.pos + other.pos,
            self.neg + other.neg,
            self.literals + other.literals,
            self.pos_x + other.pos_x,
            self.neg_x + other.neg_x,
        )

    @staticmethod
    def _normalize(pieces):
        points = set()
        for lo, hi, _k in pieces:
            points.add(lo)
            if hi is not None:
                points.add(hi + 1)
        points = sorted(points)
        out = []
        for i, p in enumerate(points):
            q = points[i + 1] - 1 if i + 1 < len(points) else None
            kind = 0
            for lo, hi, k in pieces:
                if lo <= p and (hi is None or (q is not None and q <= hi)):
                    kind |= k
            if kind:
                if out and out[-1][2] == kind and out[-1][1] is not None and out[-1][1] + 1 == p:
                    out[-1] = (out[-1][0], q, kind)
                else:
                    out.append((p, q, kind))
        return out

    def regex(self, fracs: list[str] | None = None) -> str:
        """The numbers' regex; with `fracs` (the allowed fraction digits, trailing zeros stripped,
        "" for none) every fraction is also restricted to them (fractional multipleOf)."""
        if self.full:
            return NUMBER_FULL
        sides = []
        for sign, pieces, extra in (("-", self.neg, self.neg_x), ("", self.pos, self.pos_x)):
            alts = [
                (len(str(i)), str(i) + f)
                for i, frac in extra
                if (f := frac if fracs is None else _frac_filter(fracs, frac)) is not None
            ]
            for lo, hi, kind in self._normalize(pieces):
                f = _FRAC[kind] if fracs is None else _frac_filter(fracs, kind)
                if f is not None:
                    alts += [(n, s + f) for n, s in _int_alts(lo, hi)]
            if alts:
                alts.sort(key=lambda t: -t[0])
                body = "|".join(s for _n, s in alts)
                sides.append(f"{re.escape(sign)}(?:{body})" if sign else f"(?:{body})")
        sides += self.literals
        return "(?:" + "|".join(sides) + ")"


def _digits_regex(strings: list[str]) -> str:
    """A compact regex for a finite set of digit strings (a trie whose equal subtrees share a class)."""
    trie: dict = {}
    for text in strings:
        node = trie
        for ch in text:
            node = node.setdefault(ch, {})
        node[""] = {}

    def walk(node: dict) -> str:
        by_sub: dict[str, list[str]] = {}
        for ch, sub in node.items():
            if ch:
                by_sub.setdefault(walk(sub), []).append(ch)
        alts = [
            (chs[0] if len(chs) == 1 else "[" + "".join(sorted(chs)) + "]") + sub
            for sub, chs in sorted(by_sub.items())
        ]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        if "" in node:
            return body + "?" if len(alts) == 1 and len(body) == 1 else f"(?:{body})?"
        return body

    return walk(trie)


def _frac_filter(fracs: list[str], kind) -> str | None:
    """The fraction part (dot included, optional when none is allowed) whose digits are in `fracs`
    and in `kind` (Z, NZ, ANYF or a fraction regex from the bounds); None when there is none."""
    if isinstance(kind, str):
        bare = re.fullmatch(kind, "") is not None
        keep = [f for f in fracs if re.fullmatch(kind, "." + (f or "0"))]
    elif kind == Z:
        bare, keep = True, [""]
    elif kind == NZ:
        bare, keep = False, [f for f in fracs if f]
    else:
        bare, keep = True, list(fracs)
    # nonzero digits first: lark takes the first alternative that matches, not the longest
    parts = ([r"\." + _digits_regex([f for f in keep if f]) + "0*"] if any(keep) else []) + (
        [r"\.0+"] if "" in keep else []
    )
    if not parts:
        return "" if bare else None
    body = parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"
    return f"(?:{body})?" if bare else body


def _decimal(x) -> Fraction:
    """The exact value of a JSON number as written (0.01 is 1/100, not the nearest double)."""
    from decimal import Decimal

    return Fraction(Decimal(repr(x))) if isinstance(x, float) else Fraction(x)


def _frac_cmp(digits: str, op: str) -> str | None:
    """Regex for fraction digit strings D (after the dot) with 0.D op 0.digits."""
    if not digits:
        return {"ge": "[0-9]*", "gt": "[0-9]*[1-9][0-9]*", "le": "0*", "lt": None}[op]
    f, rest = int(digits[0]), digits[1:]
    alts = []
    if op in ("ge", "gt") and f < 9:
        alts.append(f"[{f + 1}-9][0-9]*")
    if op in ("le", "lt") and f > 0:
        alts.append(f"[0-{f - 1}][0-9]*")
    sub = _frac_cmp(rest, op)
    if sub is not None:
        # for <=, < a fraction that stops while equal so far is smaller (rest has a nonzero digit)
        alts.append(f"{f}(?:{sub})?" if rest and op in ("le", "lt") else f"{f}{sub}")
    if not alts:
        return None
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def _dec_split(d):
    """Decimal >= 0 -> (integer part, fraction digits without trailing zeros)."""
    i = int(d)
    frac = format(d - i, "f").partition(".")[2].rstrip("0")
    return i, frac


def _mag_pieces_dec(a, a_ex, b, b_ex):
    """Like `_mag_pieces` for decimal bounds: (pieces, [(integer part, fraction regex)]) or None
    when both bounds fall in the same integer with fractions on both sides."""
    from decimal import Decimal

    if a is None or a < 0:
        a, a_ex = Decimal(0), False
    if b is not None and (b < a or (b == a and (a_ex or b_ex))):
        return [], []
    ai, af = _dec_split(a)
    if af:
        low = ("frac", "\\." + _frac_cmp(af, "gt" if a_ex else "ge"))
    else:
        low = ("kind", NZ if a_ex else ANYF)
    if b is None:
        high = None
    else:
        bi, bf = _dec_split(b)
        if bf:
            r = _frac_cmp(bf, "lt" if b_ex else "le")
            high = ("frac", f"(?:\\.{r})?" if r is not None else "")
        else:
            high = ("kind", Z) if not b_ex else ("none", None)
    pieces, extra = [], []
    if b is not None and ai == bi:
        if low[0] == "kind" and low[1] == ANYF:
            if high[0] == "kind":
                pieces.append((ai, ai, high[1]))
            elif high[0] == "frac":
                extra.append((ai, high[1]))
            return pieces, extra
        if high[0] == "none":
            return [], []
        if high[0] == "kind" and high[1] == Z:
            return [], []  # the fraction must be nonzero (or >= a positive one) and zero
        return None
    if low[0] == "kind":
        pieces.append((ai, ai, low[1]))
    else:
        extra.append((ai, low[1]))
    top = None if b is None else bi - 1
    if top is None or top >= ai + 1:
        pieces.append((ai + 1, top, ANYF))
    if b is not None:
        if high[0] == "kind":
            pieces.append((bi, bi, high[1]))
        elif high[0] == "frac":
            extra.append((bi, high[1]))
    return pieces, extra


def _mag_pieces(a, a_ex, b, b_ex, integer):
    """Pieces of magnitudes v >= 0 with a <(=) v <(=) b (a, b ints or None)."""
    if a is None or a < 0:
        a, a_ex = 0, False
    if b is not None and (b < a or (b == a and (a_ex or b_ex))):
        return []
    lower = [(a + 1, None, ANYF), (a, a, NZ)] if a_ex else [(a, None, ANYF)]
    if b is None:
        upper = [(0, None, ANYF)]
    elif b_ex:
        upper = [(0, b - 1, ANYF)] if b >= 1 else []
    else:
        upper = ([(0, b - 1, ANYF)] if b >= 1 else []) + [(b, b, Z)]
    out = []
    for lo1, hi1, k1 in lower:
        for lo2, hi2, k2 in upper:
            lo = max(lo1, lo2)
            hi = hi1 if hi2 is None else hi2 if hi1 is None else min(hi1, hi2)
            k = k1 & k2 & (Z if integer else ANYF)
            if k and (hi is None or lo <= hi):
                out.append((lo, hi, k))
    return out


# ----------------------------------------------------------------------------- formats

_D2 = "[0-9]{2}"
_YEAR = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"  # year 0 is not a date in Python
_LEAP = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_DATE = (
    f"(?:{_YEAR}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
    f"|(?:0[13578]|1[02])-31)|{_LEAP}-02-29)"
)
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_DUR_T = "T(?:[0-9]+H(?:[0-9]+M)?(?:[0-9]+S)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S)"
_DURATION = f"P(?:(?:[0-9]+Y(?:[0-9]+M)?(?:[0-9]+D)?|[0-9]+M(?:[0-9]+D)?|[0-9]+D)(?:{_DUR_T})?|{_DUR_T}|[0-9]+W)"
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_H16 = "[0-9a-fA-F]{1,4}"
_LS32 = f"(?:{_H16}:{_H16}|{_IPV4})"
_IPV6 = (
    "(?:"
    + "|".join(
        [
            f"(?:{_H16}:){{6}}{_LS32}",
            f"::(?:{_H16}:){{5}}{_LS32}",
            f"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
            f"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}",
            f"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
            f"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
            f"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
            f"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
            f"(?:(?:{_H16}:){{0,6}}{_H16})?::",
        ]
    )
    + ")"
)
_LABEL = "[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,58}[a-zA-Z0-9])?"
_HOSTNAME = rf"(?:{_LABEL}\.){{0,3}}[a-zA-Z](?:[a-zA-Z0-9-]{{0,58}}[a-zA-Z0-9])?"
_ATEXT = r"[a-zA-Z0-9!#$%&'*+\x2f=?^_`{|}~-]"
# any number of domain labels: the `email` check has no length limit (hostnames keep 4 labels so
# that they stay within RFC 1123's 253 characters); also the smaller automaton (239 states vs 832)
_EMAIL = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_LABEL}\.)*[a-zA-Z](?:[a-zA-Z0-9-]{{0,58}}[a-zA-Z0-9])?"
_PCT = "%[0-9a-fA-F]{2}"
_PCHAR = rf"(?:[a-zA-Z0-9._~!$&'()*+,;=:@-]|{_PCT})"
_URI = (
    rf"[a-zA-Z][a-zA-Z0-9+.-]*:"
    rf"(?:\x2f\x2f(?:(?:[a-zA-Z0-9._~!$&'()*+,;=:-]|{_PCT})*@)?(?:[a-zA-Z0-9._~!$&'()*+,;=-]|{_PCT})*(?::[0-9]*)?"
    rf"(?:\x2f{_PCHAR}*)*|\x2f(?:{_PCHAR}+(?:\x2f{_PCHAR}*)*)?|{_PCHAR}+(?:\x2f{_PCHAR}*)*)?"
    rf"(?:\?(?:{_PCHAR}|[\x2f?])*)?(?:#(?:{_PCHAR}|[\x2f?])*)?"
)
_AUTH = (
    rf"\x2f\x2f(?:(?:[a-zA-Z0-9._~!$&'()*+,;=:-]|{_PCT})*@)?(?:[a-zA-Z0-9._~!$&'()*+,;=-]|{_PCT})*(?::[0-9]*)?"
    rf"(?:\x2f{_PCHAR}*)*"
)
_PCHAR_NC = rf"(?:[a-zA-Z0-9._~!$&'()*+,;=@-]|{_PCT})"
_QF = rf"(?:\?(?:{_PCHAR}|[\x2f?])*)?(?:#(?:{_PCHAR}|[\x2f?])*)?"
_URI_REF = rf"(?:{_URI}|(?:{_AUTH}|\x2f(?:{_PCHAR}+(?:\x2f{_PCHAR}*)*)?|{_PCHAR_NC}+(?:\x2f{_PCHAR}*)*)?{_QF})"
_IDN_LABEL = "[a-z0-9]{1,20}(?:-[a-z0-9]{1,20}){0,2}"
_IDN_HOSTNAME = rf"(?:{_IDN_LABEL}\.){{0,3}}[a-z](?:[a-z0-9]{{0,19}})(?:-[a-z0-9]{{1,20}}){{0,2}}"
_JP_CHAR = _class(_complement([(0, 0x1F), (0x22, 0x22), (0x2F, 0x2F), (0x5C, 0x5C), (0x7E, 0x7E)]))
_JSON_POINTER = rf"(?:\x2f(?:{_JP_CHAR}|~[01])*)*"
_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# name -> (regex over the JSON string body (no escapes needed), min length, max length)
FORMATS = {
    "date-time": (f"{_DATE}T{_TIME}", 20, None),
    "date": (_DATE, 10, 10),
    "time": (_TIME, 9, None),
    "duration": (_DURATION, 3, None),
    "email": (_EMAIL, 3, None),
    "uuid": (_UUID, 36, 36),
    "uri": (_URI, 2, None),
    "ipv4": (_IPV4, 7, 15),
    "ipv6": (_IPV6, 2, 45),
    "hostname": (_HOSTNAME, 1, 243),
    "uri-reference": (_URI_REF, 0, None),
    "iri": (_URI, 2, None),
    "iri-reference": (_URI_REF, 0, None),
    "idn-email": (_EMAIL, 3, None),
    "idn-hostname": (_IDN_HOSTNAME, 1, 251),
    "json-pointer": (_JSON_POINTER, 0, None),
    "relative-json-pointer": (f"(?:0|[1-9][0-9]*)(?:#|{_JSON_POINTER})", 1, None),
    "regex": ("[a-zA-Z0-9 _-]*", 0, None),
    "uri-template": ("[a-zA-Z0-9._~:\\x2f?#@!$&'()*+,;=-]*", 0, None),
}
# formats the specification defines but guide does not implement (strict error); other
# (custom) format names are annotations that no validator checks and are ignored.
KNOWN_FORMATS = frozenset()


# ----------------------------------------------------------------------------- parts


@dataclass
class Part:
    """What one subschema allows, split so that scalars merge into one terminal."""

    any: bool = False
    strings: list = field(default_factory=list)  # full regexes of quoted strings
    nums: NumSet = field(default_factory=NumSet)
    lits: set = field(default_factory=set)  # "true", "false", "null"
    rules: list = field(default_factory=list)  # nonterminals (objects, arrays, opaque refs)
    types: set = field(default_factory=set)  # JSON types the part may produce
    digit_rule: str | None = None  # a multipleOf integer rule, lexed digit by digit

    def empty(self) -> bool:
        return not (self.any or self.strings or not self.nums.empty() or self.lits or self.rules)

    def union(self, other: Part) -> Part:
        if self.any or other.any:
            return Part(any=True, types=set(_TYPES))
        return Part(
            False,
            self.strings + [s for s in other.strings if s not in self.strings],
            self.nums.union(other.nums),
            self.lits | other.lits,
            self.rules + [r for r in other.rules if r not in self.rules],
            self.types | other.types,
            self.digit_rule or other.digit_rule,
        )

    def clashes_with(self, other: Part) -> bool:
        """Numbers lexed digit by digit (multipleOf) next to other numbers: the lexer would have
        to cut one digit string two ways, and takes one without the parser's say."""
        return bool(
            (self.digit_rule and (other.digit_rule or not other.nums.empty()))
            or (other.digit_rule and not self.nums.empty())
        )

    def digits_widened(self) -> Part:
        """The lenient fallback: the multipleOf rule becomes every integer."""
        if not self.digit_rule:
            return self
        every_int = NumSet(pos=[(0, None, Z)], neg=[(0, None, Z)])
        return Part(
            self.any, self.strings, self.nums.union(every_int), self.lits,
            [r for r in self.rules if r != self.digit_rule], self.types,
        )


def _lark_regex(regex: str) -> str:
    """Regex text for a lark /.../ literal: lark evaluates escapes and turns backslash-quote into a
    quote, so bare quotes and slashes are written as \\x22 / \\x2f (escape pairs are kept)."""
    out, i = [], 0
    while i < len(regex):
        ch = regex[i]
        if ch == "\\":
            out.append(regex[i : i + 2])
            i += 2
            continue
        out.append("\\x22" if ch == '"' else "\\x2f" if ch == "/" else ch)
        i += 1
    return "".join(out)


def _join(base: str, ref: str) -> str:
    if ref.startswith("#"):
        return urldefrag(base)[0] + ref
    if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", ref) or not base:
        return ref
    return urljoin(base, ref)


def _ptr(ptr: str, *keys) -> str:
    for k in keys:
        ptr += "/" + str(k).replace("~", "~0").replace("/", "~1")
    return ptr


def _json_eq(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_eq(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_eq(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def json_body(v: str) -> str:
    """The JSON spelling of the string `v` without its quotes, as guide writes it: JSON's own
    (`json.dumps(v, ensure_ascii=False)`), except lone surrogates, which UTF-8 cannot carry,
    written as lowercase \\u escapes."""
    text = json.dumps(v, ensure_ascii=False)[1:-1]
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _quoted_literal(v: str) -> str:
    """The regex of the JSON string literal `v` as guide writes it."""
    return '"' + _lit(json_body(v)) + '"'


def _json_key(v):
    """A hashable key equal for exactly the values `_json_eq` calls equal (1 == 1.0, True != 1)."""
    if isinstance(v, bool) or v is None:
        return ("c", v)
    if isinstance(v, (int, float)):
        return ("n", int(v) if isinstance(v, float) and v.is_integer() else v)
    if isinstance(v, str):
        return ("s", v)
    if isinstance(v, list):
        return ("l", tuple(_json_key(x) for x in v))
    return ("d", frozenset((k, _json_key(x)) for k, x in v.items()))


def _json_type(v) -> str:
    """The JSON type of a value as branch_types names it (integers count as numbers)."""
    t = _type_of(v)
    return "number" if t == "integer" else t


def _type_of(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer()):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


class _Compiler:
    def __init__(
        self, root, strict: bool, ws: str, order: str, max_depth: int = MAX_DEPTH, max_rules: int = MAX_RULES
    ) -> None:
        self.root = root
        self.max_depth = max_depth
        self.max_rules = max_rules
        self.strict = strict
        self.ws = ws
        self.order = order
        self.warnings: list[tuple[str, str, str]] = []
        self.rules: dict[str, str] = {}  # name -> rhs
        self.rhs_names: dict[str, str] = {}
        self.terms: dict[str, str] = {}  # regex -> name
        self.ref_state: dict[str, Any] = {}  # uri -> Part (done) or rule name (in progress)
        self.multi_struct: list[str] = []  # pointers of unions with several object/array branches
        # Keys spelled with escapes are taken by the excluded-keys terminals only where strings
        # are length-bounded: there a terminal that dies on an escape doubles the counted string's
        # lexer states (and schemas fail the 20,000-state cap); elsewhere the raw-only form is
        # sound and keeps the product lexer smaller (time to first mask: median 42 against 67 ms).
        self.raw_keys = not _has_length_bounds(root)
        self.widen: set[str] = set()  # lenient: unions to widen after an LALR conflict
        self.draft_old = isinstance(root, dict) and any(
            d in str(root.get("$schema", "")) for d in _OLD_DRAFTS
        )
        self.docs: dict[str, tuple[Any, str]] = {}  # base uri -> (node, pointer)
        self.anchors: dict[str, tuple[Any, str]] = {}
        self._index(root, "", "")
        self._validator = None
        self.depth = 0

    # ------------------------------------------------------------------ grammar building
    def term(self, regex: str) -> str:
        name = self.terms.get(regex)
        if name is None:
            if len(regex) > MAX_TERMINAL_CHARS:
                raise GrammarError(
                    f"schema too large: one string terminal (e.g. a long enum) needs a regex of "
                    f"{len(regex):,} characters, over {MAX_TERMINAL_CHARS:,}"
                )
            name = self.terms[regex] = f"T{len(self.terms)}"
        return name

    def punct(self, ch: str) -> str:
        w = self.ws
        esc = "\\" + ch
        regex = {
            "{": esc + w,
            "[": esc + w,
            "}": w + esc,
            "]": w + esc,
            ",": w + "," + w,
            ":": w + ":" + w,
        }[ch]
        return self.term(regex)

    def rule(self, alts: list[str]) -> str:
        rhs = " | ".join(a if a else "" for a in alts) if alts else None
        if rhs is None:
            raise AssertionError("empty rule")
        name = self.rhs_names.get(rhs)
        if name is None:
            name = self.new_name()
            self.rules[name] = rhs
            self.rhs_names[rhs] = name
        return name

    def new_name(self) -> str:
        if len(self.rules) >= self.max_rules:
            raise GrammarError(
                f"schema too large: the grammar exceeds max_rules={self.max_rules} rules"
            )
        name = f"r{len(self.rules)}"
        self.rules.setdefault(name, "")
        return name

    def define(self, name: str, alts: list[str]) -> None:
        self.rules[name] = " | ".join(alts)

    def value_rule(self, part: Part) -> str:
        if part.any:
            return self.any_rule()
        alts = []
        scal = []
        long_rule = None
        if len(part.strings) == 1 and (m := _COUNTED_STRING.fullmatch(part.strings[0])):
            mn, mx = int(m[1]), int(m[2])
            if mx > _CHUNK_ABOVE:  # the only string of the part: its chunk terminals meet no other
                long_rule = self.long_string(mn, mx)
                part = Part(False, [], part.nums, part.lits, part.rules, part.types, part.digit_rule)
        # strings with a length lookahead stay top-level alternatives of the terminal: the only
        # place the regex compiler (and lark: the lookahead ends at the closing quote) reads one
        looks = [s for s in part.strings if s.startswith("(?")]
        plain = [s for s in part.strings if not s.startswith("(?")]
        if plain:
            scal.append(
                plain[0] if len(plain) == 1 else '"(?:' + "|".join(s[1:-1] for s in plain) + ')"'
            )
        scal += looks
        if not part.nums.empty():
            scal.append(part.nums.regex())
        scal += sorted(part.lits)
        if scal:
            alts.append(self.term(scal[0] if len(scal) == 1 else "(?:" + "|".join(scal) + ")"))
        if long_rule is not None:
            alts.append(long_rule)
        alts += part.rules
        if len(alts) == 1 and alts[0] in self.rules:
            return alts[0]
        return self.rule(alts)

    def long_string(self, mn: int, mx: int) -> str:
        """A rule for the quoted strings of mn..mx code points (mx > _CHUNK_ABOVE), lexed in chunks
        of _CHUNK code points: `"` + a chunk, further chunks, then the last 1.._CHUNK code points
        and the closing quote (or the whole string at once when it is at most _CHUNK long).

        One terminal `"CHAR{mn,mx}"` has about 21 automaton states per code point of mx (the
        UTF-8 and escape states of each position), past the lexer's cap from maxLength ~1000 on;
        the chunk terminals have 21 x _CHUNK each, are shared by every long string, and the count
        of chunks lives in a chain of rules. The lexing is unambiguous: a chunk ends after exactly
        _CHUNK code points, where the last piece (which can still take the closing quote) is the
        longer match only if the quote follows, so every split the lexer makes is one the rules
        allow, and the rules allow exactly mn..mx code points in all."""
        k = _CHUNK
        chunk = self.term(f"{CHAR_ONE}{{{k}}}")
        steps = []  # (lo, hi): code points still allowed after the opening chunk and j more
        lo, hi = mn - k, mx - k
        while hi >= 1:
            steps.append((max(lo, 1), hi))
            lo, hi = lo - k, hi - k
        nxt = None
        for lo, hi in reversed(steps):
            alts = []
            if lo <= min(k, hi):
                alts.append(self.term(f'{CHAR_ONE}{{{lo},{min(k, hi)}}}"'))
            if hi > k:
                alts.append(f"{chunk} {nxt}")
            nxt = self.rule(alts)
        alts = [] if mn > k else [self.term(f'"{CHAR_ONE}{{{mn},{k}}}"')]
        opening = f'"{CHAR_ONE}{{{k}}}'  # the opening quote and the first chunk
        alts.append(f"{self.term(opening)} {nxt}")
        return self.rule(alts)

    def any_rule(self) -> str:
        if "json_value" not in self.rules:
            self.rules["json_value"] = ""
            scal = self.term(f"(?:{JSON_STRING}|{NUMBER_FULL}|true|false|null)")
            key = self.term(JSON_STRING)
            lb, rb, lk, rk, c, col = (self.punct(x) for x in "{}[],:")
            self.rules["json_member"] = f"{key} {col} json_value"
            self.rules["json_object"] = f"{lb} {rb} | {lb} json_member ({c} json_member)* {rb}"
            self.rules["json_array"] = f"{lk} {rk} | {lk} json_value ({c} json_value)* {rk}"
            self.rules["json_value"] = f"{scal} | json_object | json_array"
        return "json_value"

    def text(self, start: str) -> str:
        lines = [f"start: {start}"]
        for name, rhs in self.rules.items():
            lines.append(f"{name}: {rhs}")
        for regex, name in self.terms.items():
            lines.append(f"{name}: /{_lark_regex(regex)}/")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ errors
    def unsupported(self, ptr: str, kw: str, msg: str) -> None:
        where = ptr or "#"
        if self.strict:
            raise UnsupportedFeatureError(
                f"{msg} (keyword {kw!r} at {where})", feature=kw, where=where
            )
        self.warnings.append((where, kw, msg))

    def malformed(self, ptr: str, msg: str):
        return GrammarError(f"malformed schema at {ptr or '#'}: {msg}")

    # ------------------------------------------------------------------ refs
    def _index(self, node, base: str, ptr: str, depth: int = 0) -> None:
        if depth > self.max_depth * 4:
            raise GrammarError(
                f"schema nesting deeper than {self.max_depth * 4} levels (4 x max_depth) at {ptr}"
            )
        if isinstance(node, dict):
            sid = node.get("$id", node.get("id") if self.draft_old else None)
            if isinstance(sid, str) and not isinstance(
                node.get("properties", {}).get("id") if sid is node.get("id") else None, dict
            ):
                full = _join(base, sid)
                url, frag = urldefrag(full)
                if frag and sid.startswith("#"):
                    self.anchors[urldefrag(base)[0] + "#" + frag] = (node, ptr)
                else:
                    base = url
                    self.docs.setdefault(base, (node, ptr))
            anc = node.get("$anchor")
            if isinstance(anc, str):
                self.anchors[urldefrag(base)[0] + "#" + anc] = (node, ptr)
            for k, v in node.items():
                if k in ("enum", "const", "examples", "default"):
                    continue
                self._index(v, base, _ptr(ptr, k), depth + 1)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                self._index(v, base, _ptr(ptr, i), depth + 1)
        if depth == 0:
            self.docs.setdefault(base, (node, ""))
            self.docs.setdefault("", (node, ""))

    def base_of(self, node, base: str) -> str:
        sid = node.get("$id") if isinstance(node, dict) else None
        if isinstance(sid, str) and not sid.startswith("#"):
            return urldefrag(_join(base, sid))[0]
        return base

    def resolve(self, ref: str, base: str, ptr: str):
        """-> (uri, node, pointer, base of node)."""
        if not isinstance(ref, str):
            raise self.malformed(ptr, "$ref must be a string")
        full = _join(base, ref)
        url, frag = urldefrag(full)
        if url not in self.docs:
            if url == "" or url == urldefrag(base)[0]:
                url = ""
            else:
                raise UnsupportedFeatureError(
                    f"remote $ref {ref!r} at {ptr or '#'} is not in the document; guide never fetches schemas",
                    feature="$ref",
                    where=ptr or "#",
                )
        doc, dptr = self.docs.get(url, self.docs[""])
        if frag and not frag.startswith("/"):
            key = (url or urldefrag(base)[0]) + "#" + frag
            if key not in self.anchors:
                raise GrammarError(
                    f"$ref {ref!r} at {ptr or '#'}: no anchor {frag!r} in the document"
                )
            node, nptr = self.anchors[key]
            return key, node, nptr, url
        node, nptr = doc, dptr
        for raw in frag.split("/")[1:] if frag else []:
            from urllib.parse import unquote

            tok = unquote(raw).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and tok in node:
                node = node[tok]
            elif isinstance(node, list) and tok.isdigit() and int(tok) < len(node):
                node = node[int(tok)]
            else:
                raise GrammarError(f"$ref {ref!r} at {ptr or '#'} points to nothing")
            nptr = _ptr(nptr, tok)
        return (url + "#" + frag), node, nptr, url

    def ref_part(self, ref, base, ptr) -> Part:
        uri, node, nptr, nbase = self.resolve(ref, base, ptr)
        state = self.ref_state.get(uri)
        if isinstance(state, Part):
            return state
        if isinstance(state, str):  # recursion: refer to the rule being built
            return Part(rules=[state], types=set(_TYPES))
        name = self.new_name()
        self.ref_state[uri] = name
        saved = self.depth
        self.depth = 0
        try:
            part = self.part(node, nptr, nbase)
        finally:
            self.depth = saved
        if (
            part.empty()
        ):  # unsatisfiable target: an unproductive rule keeps recursive uses well-formed
            self.define(name, [f"{self.punct('[')} {name}"])
            self.ref_state[uri] = part
            return part
        self.define(name, [self.value_rule(part)])
        self.ref_state[uri] = part
        return part

    def deref(self, node, base, ptr, depth=0):
        """Inline $ref chains for merging (-> node, base)."""
        while (
            isinstance(node, dict)
            and "$ref" in node
            and (self.draft_old or set(node) - ANNOTATIONS <= {"$ref"})
        ):
            depth += 1
            if depth > 32:
                raise UnsupportedFeatureError(
                    f"$ref cycle at {ptr or '#'}", feature="$ref", where=ptr or "#"
                )
            _uri, node, ptr, base = self.resolve(node["$ref"], base, ptr)
        if base:
            node = _absolutize(node, base)
        return node, base

    # ------------------------------------------------------------------ validation oracle for enum/const
    def validator(self):
        if self._validator is None:
            import jsonschema

            cls = jsonschema.validators.validator_for(
                self.root if isinstance(self.root, dict) else {},
                default=jsonschema.Draft202012Validator,
            )
            self._validator = cls(self.root, format_checker=cls.FORMAT_CHECKER)
        return self._validator

    def valid_for(self, node, value) -> bool | None:
        """Whether `value` validates against `node` (None when the oracle fails)."""
        try:
            return bool(self.validator().evolve(schema=node).is_valid(value))
        except Exception:  # noqa: BLE001 - unknown: the caller treats it as an overlap
            return None

    def literal_ok(self, node, value) -> bool:
        """Keep an enum/const value only when the oracle says it is valid."""
        return self.valid_for(node, value) is True

    # ------------------------------------------------------------------ main dispatch
    def part(self, node, ptr: str, base: str) -> Part:
        if node is True or node == {}:
            return Part(any=True, types=set(_TYPES))
        if node is False:
            return Part()
        if not isinstance(node, dict):
            raise self.malformed(
                ptr, f"a schema must be an object or a boolean, not {type(node).__name__}"
            )
        self.depth += 1
        if self.depth > self.max_depth:
            raise GrammarError(f"schema nesting deeper than max_depth={self.max_depth} levels at {ptr}")
        try:
            return self._part(node, ptr, self.base_of(node, base))
        finally:
            self.depth -= 1

    _APPLICATORS = (
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "$ref",
        "if",
        "dependentSchemas",
        "dependencies",
        "$dynamicRef",
    )

    def uneval_local(self, node):
        """unevaluated* of a schema without in-place applicators, as additionalProperties / items."""
        if not isinstance(node, dict) or not (
            "unevaluatedProperties" in node or "unevaluatedItems" in node
        ):
            return node
        if any(k in node for k in self._APPLICATORS):
            return node  # left for the strict check to report
        node = dict(node)
        if "unevaluatedProperties" in node:
            u = node.pop("unevaluatedProperties")
            node.setdefault("additionalProperties", u)
        if "unevaluatedItems" in node:
            u = node.pop("unevaluatedItems")
            u = {} if u is True else u  # an explicit schema: the items count as evaluated
            if "prefixItems" in node or not isinstance(node.get("items"), list):
                node.setdefault("items", u)
            else:
                node.setdefault("additionalItems", u)
        return node

    def _check_types(self, node, ptr):
        t = node.get("type")
        if t is not None:
            ts = [t] if isinstance(t, str) else t
            if not isinstance(ts, list) or not all(isinstance(x, str) and x in _TYPES for x in ts):
                raise self.malformed(_ptr(ptr, "type"), f"invalid type {t!r}")
        for kw, typ in (
            ("properties", dict),
            ("patternProperties", dict),
            ("required", list),
            ("enum", list),
            ("allOf", list),
            ("anyOf", list),
            ("oneOf", list),
            ("prefixItems", list),
            ("$defs", dict),
            ("definitions", dict),
            ("pattern", str),
            ("format", str),
        ):
            if kw in node and not isinstance(node[kw], typ):
                raise self.malformed(
                    _ptr(ptr, kw),
                    f"{kw} must be a {'object' if typ is dict else 'array' if typ is list else 'string'}",
                )
        for kw in (
            "minLength",
            "maxLength",
            "minItems",
            "maxItems",
            "minProperties",
            "maxProperties",
        ):
            if kw in node and (
                isinstance(node[kw], bool)
                or not isinstance(node[kw], (int, float))
                or node[kw] < 0
                or (isinstance(node[kw], float) and not node[kw].is_integer())
            ):
                raise self.malformed(_ptr(ptr, kw), f"{kw} must be a non-negative integer")
        for kw in ("minimum", "maximum", "multipleOf"):
            if kw in node and (
                isinstance(node[kw], bool) or not isinstance(node[kw], (int, float))
            ):
                raise self.malformed(_ptr(ptr, kw), f"{kw} must be a number")
        for kw in ("exclusiveMinimum", "exclusiveMaximum"):
            if kw in node and not isinstance(node[kw], (int, float)):
                raise self.malformed(
                    _ptr(ptr, kw), f"{kw} must be a number (or a boolean in draft-04)"
                )
        if "multipleOf" in node and node["multipleOf"] <= 0:
            raise self.malformed(_ptr(ptr, "multipleOf"), "multipleOf must be > 0")
        if "required" in node and not all(isinstance(x, str) for x in node["required"]):
            raise self.malformed(_ptr(ptr, "required"), "required must list strings")

    def _part(self, node: dict, ptr: str, base: str) -> Part:
        self._check_types(node, ptr)
        # $ref
        if "$ref" in node:
            rest = {k: v for k, v in node.items() if k != "$ref" and k not in ANNOTATIONS}
            if self.draft_old or not rest:
                return self.ref_part(node["$ref"], base, _ptr(ptr, "$ref"))
            allof = list(node.get("allOf", [])) + [{"$ref": node["$ref"]}]
            node = {k: v for k, v in node.items() if k != "$ref"}
            node["allOf"] = allof
        if (
            isinstance(node.get("not"), dict)
            and set(node["not"]) - ANNOTATIONS == {"not"}
            and "unevaluatedProperties" not in node
            and "unevaluatedItems" not in node
        ):
            inner = node["not"]["not"]
            node = {k: v for k, v in node.items() if k != "not"}
            node["allOf"] = list(node.get("allOf", [])) + [inner]
        if "allOf" in node:
            merged = {
                k: v
                for k, v in node.items()
                if k not in ("allOf", "unevaluatedProperties", "unevaluatedItems")
            }
            for i, sub in enumerate(node["allOf"]):
                sub, sbase = self.deref(sub, base, _ptr(ptr, "allOf", i))
                if sub is False:
                    return Part()
                if sub is True:
                    continue
                if not isinstance(sub, dict):
                    raise self.malformed(
                        _ptr(ptr, "allOf", i), "a schema must be an object or a boolean"
                    )
                sub = self.uneval_local(sub)
                if "$ref" in sub:  # 2020-12 ref with siblings inside allOf
                    inner = {k: v for k, v in sub.items() if k != "$ref"}
                    target, _b = self.deref({"$ref": sub["$ref"]}, sbase, _ptr(ptr, "allOf", i))
                    sub = {"allOf": [inner, target]} if target is not True else inner
                merged = self.merge(merged, sub, _ptr(ptr, "allOf"))
                if merged is False:
                    return Part()
            for k in ("unevaluatedProperties", "unevaluatedItems"):
                if k in node:
                    merged[k] = node[k]
            return self.part(merged, ptr, base)
        if "enum" in node or "const" in node:
            return self.enum_part(node, ptr, base)
        if "anyOf" in node or "oneOf" in node:
            return self.anyof_part(node, ptr, base)
        return self.typed_part(node, ptr, base)

    # ------------------------------------------------------------------ combinators
    def branch_types(self, sub, base, ptr, depth=0) -> set:
        sub, base = self.deref(sub, base, ptr)
        if sub is True or sub == {}:
            return set(_TYPES) - {"integer"}
        if sub is False or not isinstance(sub, dict):
            return set()
        if "const" in sub:
            vals = [sub["const"]]
        elif "enum" in sub and isinstance(sub["enum"], list):
            vals = sub["enum"]
        else:
            vals = None
        if vals is not None:
            return {"number" if _type_of(v) == "integer" else _type_of(v) for v in vals}
        ts = set(_TYPES) - {"integer"}
        t = sub.get("type")
        if t is not None:
            ts = {"number" if x == "integer" else x for x in ([t] if isinstance(t, str) else t)}
        for kw in ("anyOf", "oneOf"):
            if kw in sub and isinstance(sub[kw], list) and depth < 8:
                u = set()
                for b in sub[kw]:
                    u |= self.branch_types(b, base, ptr, depth + 1)
                ts &= u
        for b in sub.get("allOf", []) if isinstance(sub.get("allOf"), list) and depth < 8 else []:
            ts &= self.branch_types(b, base, ptr, depth + 1)
        return ts

    # ------------------------------------------------------------------ oneOf exclusivity
    def free_types(self, sub, base, ptr) -> set:
        """Types (number for both numeric types) of which `sub` accepts every value."""
        sub, _b = self.deref(sub, base, ptr)
        if sub is True or sub == {}:
            return set(_TYPES) - {"integer"}
        if not isinstance(sub, dict) or any(k in sub for k in _KW_ANY):
            return set()
        t = sub.get("type")
        ts = set(_TYPES) - {"integer"} if t is None else {t} if isinstance(t, str) else set(t)
        ts.discard("integer")  # `integer` alone leaves out non-integral numbers
        return ts - {_KW_TYPE[k] for k in sub if k in _KW_TYPE}

    def _const_values(self, sub, base, ptr):
        sub, _b = self.deref(sub, base, ptr)
        if isinstance(sub, dict):
            if "const" in sub:
                return [sub["const"]]
            if isinstance(sub.get("enum"), list):
                return sub["enum"]
        return None

    def values_disjoint(self, sa, sb, base, ptr, depth=0) -> bool:
        """No JSON value validates against both subschemas (False when that is not shown)."""
        common = self.branch_types(sa, base, ptr) & self.branch_types(sb, base, ptr)
        if not common:
            return True
        va, vb = self._const_values(sa, base, ptr), self._const_values(sb, base, ptr)
        if va is not None and vb is not None:
            return not any(_json_eq(x, y) for x in va for y in vb)
        for vals, other in ((va, sb), (vb, sa)):
            if vals is not None:
                node, _b = self.deref(other, base, ptr)
                return all(self.valid_for(node, v) is False for v in vals)
        return common == {"object"} and self.objects_disjoint(sa, sb, base, ptr, depth + 1)

    @staticmethod
    def _member_schema(node: dict, key: str):
        """The subschema a value under `key` must satisfy by `node`'s own keywords (None: not
        known, because a patternProperties pattern may apply)."""
        if key in node.get("properties", {}):
            return node["properties"][key]
        if node.get("patternProperties"):
            return None
        return node.get("additionalProperties", True)

    def objects_disjoint(self, a, b, base, ptr, depth=0) -> bool:
        """No object validates against both schemas, shown by an exact witness: a key one side
        requires whose values the two sides cannot share (a closed side allows no value)."""
        if depth > 6:
            return False
        a, _ab = self.deref(a, base, ptr)
        b, _bb = self.deref(b, base, ptr)
        if a is False or b is False:
            return True
        if not (isinstance(a, dict) and isinstance(b, dict)):
            return False
        for x, y, flip in ((a, b, False), (b, a, True)):
            # every value of x satisfies each allOf member (and a $ref with siblings) of x ...
            subs = list(x.get("allOf", [])) if isinstance(x.get("allOf"), list) else []
            if "$ref" in x:
                subs.append({"$ref": x["$ref"]})
            for s in subs:
                if self.objects_disjoint(*((y, s) if flip else (s, y)), base, ptr, depth + 1):
                    return True
            # ... and one branch of each anyOf / oneOf of x
            for kw in ("anyOf", "oneOf"):
                if isinstance(x.get(kw), list) and all(
                    self.objects_disjoint(*((y, s) if flip else (s, y)), base, ptr, depth + 1)
                    for s in x[kw]
                ):
                    return True
        for x, y in ((a, b), (b, a)):
            for k in x.get("required", []):
                sx, sy = self._member_schema(x, k), self._member_schema(y, k)
                if sx is not None and sy is not None and (
                    sx is False
                    or sy is False
                    or self.values_disjoint(sx, sy, base, ptr, depth)
                ):
                    return True
        return False

    def exclude(self, a, b, base, ptr, forbid: set, need: set) -> bool:
        """Make object branch `a` reject every object branch `b` accepts (for oneOf); the witness
        is added to `forbid` (keys `a` may not have) or `need` (keys `a` must have). Exact rules
        are tried first; forbidding a key and requiring a discriminator are under-approximations.
        Only the two schemas' own object keywords are used: each value of a schema satisfies
        them whatever its other applicators say. False when no witness is found."""
        if self.objects_disjoint(a, b, base, ptr):
            return True
        a, _ab = self.deref(a, base, ptr)
        b, _bb = self.deref(b, base, ptr)
        if not (isinstance(a, dict) and isinstance(b, dict)):
            return False
        req_a, req_b = set(a.get("required", [])), set(b.get("required", []))
        props_a, props_b = a.get("properties", {}), b.get("properties", {})
        closed_b = b.get("additionalProperties", True) is False and not b.get("patternProperties")
        disjoint = [
            k
            for k in props_a
            if k in props_b and self.values_disjoint(props_a[k], props_b[k], base, ptr)
        ]
        for k in sorted(need):  # keys a will require: a value b cannot take, or none allowed
            sb = self._member_schema(b, k)
            if sb is not None and (
                sb is False
                or (k in props_a and self.values_disjoint(props_a[k], sb, base, ptr))
            ):
                return True
        if disjoint and disjoint[0] not in forbid:
            need.add(disjoint[0])  # a discriminator neither side requires: require it
            return True
        for k in sorted(req_b - req_a):
            if k not in need:  # forbidding a key b requires makes every `a` object fail b
                forbid.add(k)
                return True
        if closed_b:
            for k in props_a:
                if k not in props_b and props_a[k] is not False and k not in forbid:
                    need.add(k)
                    return True
        return False

    def _items_disjoint(self, a, b, base, ptr) -> bool:
        """Two array schemas whose items share no JSON type: they overlap at most on []."""
        a, _ab = self.deref(a, base, ptr)
        b, _bb = self.deref(b, base, ptr)
        if not (isinstance(a, dict) and isinstance(b, dict)):
            return False
        if any(isinstance(s.get("items"), list) or "prefixItems" in s for s in (a, b)):
            return False
        return not (
            self.branch_types(a.get("items", True), base, ptr)
            & self.branch_types(b.get("items", True), base, ptr)
        )

    def exclusive_oneof(self, oneof: list, rest: dict, ptr, base) -> list:
        """oneOf branches rewritten so that no two accept the same value (within the parent's
        types); a strict error when that cannot be shown."""
        n = len(oneof)
        bptr = [_ptr(ptr, "oneOf", i) for i in range(n)]
        nodes = [self.deref(b, base, bptr[i])[0] for i, b in enumerate(oneof)]
        own = {k: v for k, v in rest.items() if k not in ANNOTATIONS}
        parent = self.branch_types(own, base, ptr)
        tss = [self.branch_types(b, base, bptr[i]) & parent for i, b in enumerate(oneof)]
        free = [self.free_types(b, base, bptr[i]) for i, b in enumerate(oneof)]
        finite = [self._const_values(b, base, bptr[i]) for i, b in enumerate(oneof)]
        drop: list[set] = [set() for _ in oneof]
        forbid: list[set] = [set() for _ in oneof]
        need: list[set] = [set() for _ in oneof]
        nonempty = [False] * n
        keep_vals: list = [None if f is None else list(f) for f in finite]
        clash = False
        # a type two branches accept entirely never satisfies oneOf: drop it from all (exact);
        # nor does anything two equal branches accept
        for t in set(_TYPES) - {"integer"}:
            if sum(1 for i in range(n) if t in tss[i] & free[i]) >= 2:
                for d in drop:
                    d.add(t)
        dead = {
            k
            for i in range(n)
            for j in range(i + 1, n)
            if _json_eq(nodes[i], nodes[j])
            for k in (i, j)
        }
        kept = [set() if i in dead else t - d for i, (t, d) in enumerate(zip(tss, drop))]
        # each kept value of branch i must fail every *original* branch j
        for i in range(n):
            for j in range(n):
                common = kept[i] & tss[j]
                if i == j or not common:
                    continue
                if finite[i] is not None:
                    # a value of i that validates j satisfies two branches: dropped (exact)
                    for v in finite[i]:
                        if _json_type(v) not in common:
                            continue
                        ok = self.valid_for(nodes[j], v)
                        if ok:
                            keep_vals[i] = [x for x in keep_vals[i] if not _json_eq(x, v)]
                        elif ok is None and self.valid_for(nodes[i], v) is not False:
                            clash = True
                    continue
                if finite[j] is not None:
                    # a value of j that validates i too would still be accepted by i
                    for v in finite[j]:
                        if _json_type(v) in common and all(
                            self.valid_for(nodes[x], v) is not False for x in (i, j)
                        ):
                            clash = True
                    continue
                for t in sorted(common):
                    if t == "object":
                        if not self.exclude(oneof[i], oneof[j], base, ptr, forbid[i], need[i]):
                            clash = True
                    elif t == "array" and self._items_disjoint(oneof[i], oneof[j], base, ptr):
                        mins = [
                            s.get("minItems", 0) if isinstance(s, dict) else 0
                            for s in (nodes[i], nodes[j])
                        ]
                        if all(not (isinstance(m, int) and m >= 1) for m in mins):
                            nonempty[i] = True  # both accept [], which is then invalid
                    else:
                        clash = True
        if any(forbid[i] & need[i] for i in range(n)):
            clash = True
        if clash:
            self.unsupported(
                _ptr(ptr, "oneOf"),
                "oneOf",
                "oneOf branches that can accept the same value cannot be made exclusive",
            )
            return oneof
        out = []
        for i, b in enumerate(oneof):
            extra: dict = {}
            if i in dead:
                out.append(False)
                continue
            if drop[i]:
                keep = (set(_TYPES) - {"integer"}) - drop[i]
                if not keep:
                    out.append(False)
                    continue
                extra["type"] = sorted(keep)
            if forbid[i]:
                extra["properties"] = {k: False for k in sorted(forbid[i])}
            if need[i]:
                extra["required"] = sorted(need[i])
            if nonempty[i]:
                extra["minItems"] = 1
            if finite[i] is not None and len(keep_vals[i]) < len(finite[i]):
                if not keep_vals[i]:
                    out.append(False)
                    continue
                extra["enum"] = keep_vals[i]
            out.append({"allOf": [nodes[i], extra]} if extra else b)
        return out

    def anyof_part(self, node, ptr, base) -> Part:
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
        if "oneOf" in node:
            oneof = self.exclusive_oneof(list(node["oneOf"]), rest, ptr, base)
            node = {**node, "oneOf": oneof}
            if "anyOf" in node:
                rest["allOf"] = list(rest.get("allOf", [])) + [{"anyOf": node["anyOf"]}]
            branches, key = node["oneOf"], "oneOf"
        else:
            branches, key = self.anyof_arrays(list(node["anyOf"]), ptr, base), "anyOf"
        constraining = {k for k in rest if k not in ANNOTATIONS}
        result = Part()
        closed = self.closed_objects(branches, rest, ptr, key, base)
        if closed:
            result = self.closed_union(closed)
        for i, b in enumerate(branches):
            bptr = _ptr(ptr, key, i)
            if i in closed:  # its objects are in the union; its other types are unconstrained
                types = closed[i][0].get("type", list(_TYPES))
                types = [t for t in ([types] if isinstance(types, str) else types) if t != "object"]
                if types:
                    result = result.union(self.part({"type": types}, bptr, base))
                continue
            if constraining:
                b2, bbase = self.deref(b, base, bptr)
                if b2 is False:
                    continue
                uneval = {
                    k: rest[k] for k in ("unevaluatedProperties", "unevaluatedItems") if k in rest
                }
                rest2 = {k: v for k, v in rest.items() if k not in uneval}
                sub = dict(rest) if b2 is True else {"allOf": [rest2, b2], **uneval}
                p = self.part(sub, bptr, bbase if b2 is not True else base)
            else:
                p = self.part(b, bptr, base)
            if result.clashes_with(p):
                self.unsupported(
                    _ptr(ptr, key),
                    "multipleOf",
                    f"multipleOf in one {key} branch with other numbers in another is not supported",
                )
                result, p = result.digits_widened(), p.digits_widened()
            result = result.union(p)
        if not result.any and (sum(1 for r in result.rules) > 1):
            where = _ptr(ptr, key)
            if where in self.widen:  # lenient fallback after an LALR conflict: any object / array
                self.warnings.append(
                    (where, key, "branches overlap (LALR or lexer conflict): objects/arrays widened to any")
                )
                kinds = result.types & {"object", "array"}
                result = Part(False, result.strings, result.nums, result.lits, [], result.types)
                for k in sorted(kinds):
                    self.any_rule()
                    result.rules.append("json_object" if k == "object" else "json_array")
            else:
                self.multi_struct.append(where)
        return result

    def anyof_arrays(self, branches: list, ptr, base) -> list:
        """anyOf array branches whose item types are pairwise disjoint overlap only on [];
        all but the first that accepts it get minItems 1 (same union, no LALR conflict)."""
        arr = []
        for i, b in enumerate(branches):
            b2, _b = self.deref(b, base, _ptr(ptr, "anyOf", i))
            t = b2.get("type") if isinstance(b2, dict) else None
            if (
                t in ("array", ["array"])
                and not b2.get("minItems")
                and not any(k in b2 for k in ("contains", "minContains", "allOf", "anyOf", "oneOf"))
            ):
                arr.append((i, b2))
        if len(arr) < 2 or not all(
            self._items_disjoint(x, y, base, ptr)
            for n, (_i, x) in enumerate(arr)
            for _j, y in arr[n + 1 :]
        ):
            return branches
        out = list(branches)
        for i, b2 in arr[1:]:
            out[i] = {"allOf": [b2, {"minItems": 1}]}
        return out

    _PLAIN = frozenset(["type", "properties", "required", "additionalProperties"])
    _DEFS = frozenset(["$defs", "definitions"])

    def closed_objects(self, branches, rest, ptr, key, base) -> dict:
        """Branches that are objects with only properties/required/additionalProperties (parent
        merged in): index -> (merged schema, base, pointer); empty unless at least two, with
        one schema per shared key and one additionalProperties (and, unless it is false, the
        same listed keys) for all."""
        if any(k in rest for k in ("unevaluatedProperties", "unevaluatedItems")) or (
            set(rest) & ASSERTING - self._PLAIN - self._DEFS
        ):
            return {}
        own = {k: v for k, v in rest.items() if k in self._PLAIN}
        found = {}
        for i, b in enumerate(branches):
            b2, bbase = self.deref(b, base, _ptr(ptr, key, i))
            if not isinstance(b2, dict) or set(b2) & ASSERTING - self._PLAIN - self._DEFS:
                continue
            if own.get("properties") and bbase != base:
                continue  # the parent's refs and the branch's resolve against different bases
            m = self.merge(own, b2, _ptr(ptr, key, i)) if own else b2
            t = m.get("type", "object")
            if (
                isinstance(m, dict)
                and not set(m) & ASSERTING - self._PLAIN - self._DEFS  # {"not": {}}: no value
                and "object" in ([t] if isinstance(t, str) else t)
                and all(r in m.get("properties", {}) for r in m.get("required", []))
            ):
                found[i] = (m, bbase, _ptr(ptr, key, i))
        if len(found) < 2:
            return {}
        # extra keys: none (closed), or the same schema and listed keys in every branch
        first = next(iter(found.values()))[0]
        addl, listed = first.get("additionalProperties", True), list(first.get("properties", {}))
        for m, _b, _p in found.values():
            if not _json_eq(m.get("additionalProperties", True), addl) or (
                addl is not False and list(m.get("properties", {})) != listed
            ):
                return {}
        seen: dict = {}
        for m, _b, _p in found.values():
            for k, v in m.get("properties", {}).items():
                if k in seen and not _json_eq(seen[k], v):
                    return {}
                seen[k] = v
        return found

    def closed_union(self, closed: dict) -> Part:
        """The objects of several such branches as one rule: keys in an order that keeps each
        branch's schema order where the branches agree, extra keys last; the state is the set of
        branches the keys so far still fit (exact union, LALR-friendly: each key is decided
        once)."""
        items = list(closed.values())
        orders = [list(m.get("properties", {})) for m, _b, _p in items]
        keys = list(dict.fromkeys(k for o in orders for k in o))
        before = {k: set() for k in keys}
        for o in orders:
            for a, b in itertools.pairwise(o):
                before[b].add(a)
        order: list = []
        while len(order) < len(keys):  # topological, first appearance first; cycles broken
            nxt = next((k for k in keys if k not in order and before[k] <= set(order)), None)
            order.append(nxt or next(k for k in keys if k not in order))
        col, c = self.punct(":"), self.punct(",")
        mems = {}
        for k in order:
            m, b, bptr = next(x for x in items if k in x[0].get("properties", {}))
            part = self.part(m["properties"][k], _ptr(bptr, "properties", k), b)
            mems[k] = None if part.empty() else f"{self.key_term(k)} {col} {self.value_rule(part)}"
        n = len(order)
        memo: dict = {}

        m0, b0, p0 = items[0]
        addl = m0.get("additionalProperties", True)
        vp = Part() if addl is False else self.part(addl, _ptr(p0, "additionalProperties"), b0)
        if vp.empty():
            ends = {True: self.rule([""]), False: self.rule([""])}
        else:  # extra keys after the listed ones, as in object_rule
            key = self.term(_key_excluding(set(order), raw=self.raw_keys))
            ext = self.rule([f"{key} {col} {self.value_rule(vp)}"])
            tail = self.rule([f"({c} {ext})*"])
            ends = {True: self.rule([f"{ext} {tail}", ""]), False: tail}

        def st(p: int, viable: frozenset, first: bool) -> str | None:
            if p == n:
                return ends[first]
            if (p, viable, first) in memo:
                return memo[(p, viable, first)]
            k, alts = order[p], []
            has = frozenset(i for i in viable if k in items[i][0].get("properties", {}))
            if has and mems[k] is not None:
                nx = st(p + 1, has, False)
                if nx is not None:
                    alts.append(f"{mems[k]} {nx}" if first else f"{c} {mems[k]} {nx}")
            skip = frozenset(i for i in viable if k not in items[i][0].get("required", []))
            if skip:
                nx = st(p + 1, skip, first)
                if nx is not None:
                    alts.append(nx)
            memo[(p, viable, first)] = self.rule(alts) if alts else None
            return memo[(p, viable, first)]

        body = st(0, frozenset(range(len(items))), True)
        if body is None:
            return Part()
        lb, rb = self.punct("{"), self.punct("}")
        return Part(rules=[self.rule([f"{lb} {body} {rb}"])], types={"object"})

    def _array_form(self, s: dict):
        if "prefixItems" in s:
            return list(s["prefixItems"]), s.get("items", True)
        if isinstance(s.get("items"), list):
            return list(s["items"]), s.get("additionalItems", True)
        return [], s.get("items", True)

    def merge(self, a: dict, b: dict, ptr: str):
        """allOf of two schema objects as one schema object (False when unsatisfiable)."""
        arr_keys = ("prefixItems", "items", "additionalItems")
        if any(k in a for k in arr_keys) and any(k in b for k in arr_keys):
            pa, ia = self._array_form(a)
            pb, ib = self._array_form(b)
            n = max(len(pa), len(pb))
            pre = [
                {"allOf": [pa[i] if i < len(pa) else ia, pb[i] if i < len(pb) else ib]}
                for i in range(n)
            ]
            a = {k: v for k, v in a.items() if k not in arr_keys}
            b = {k: v for k, v in b.items() if k not in arr_keys}
            if ia is not True or ib is not True:
                a["items"] = {"allOf": [ia, ib]}
            if pre:
                a["prefixItems"] = pre
        out = dict(a)
        for k, v in b.items():
            if k not in ASSERTING:
                continue  # an annotation or unknown keyword: validity does not depend on it
            if k not in out:
                out[k] = v
                continue
            av = out[k]
            if _json_eq(av, v):
                continue
            if k == "type":
                ta = {av} if isinstance(av, str) else set(av)
                tb = {v} if isinstance(v, str) else set(v)
                inter = (ta & tb) | (
                    {"integer"}
                    if ("integer" in ta and "number" in tb) or ("number" in ta and "integer" in tb)
                    else set()
                )
                if not inter:
                    return {"not": {}}
                out[k] = sorted(inter)
            elif k == "required":
                out[k] = list(dict.fromkeys(list(av) + list(v)))
            elif (
                k in ("minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum")
                and not isinstance(av, bool)
                and not isinstance(v, bool)
            ):
                out[k] = max(av, v)
            elif (
                k in ("maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum")
                and not isinstance(av, bool)
                and not isinstance(v, bool)
            ):
                out[k] = min(av, v)
            elif k == "properties":
                props = dict(av)
                for pk, pv in v.items():
                    props[pk] = {"allOf": [props[pk], pv]} if pk in props else pv
                out[k] = props
            elif (
                k in ("additionalProperties", "items", "additionalItems")
                and not isinstance(av, list)
                and not isinstance(v, list)
            ):
                out[k] = {"allOf": [av, v]}
            elif k == "enum":
                out[k] = [x for x in av if any(_json_eq(x, y) for y in v)]
            elif k == "const":
                return {"not": {}}
            elif k == "anyOf":
                if len(av) * len(v) > MAX_BRANCHES:
                    raise UnsupportedFeatureError(
                        f"allOf of anyOf too large at {ptr}", feature="allOf", where=ptr
                    )
                out[k] = [{"allOf": [x, y]} for x in av for y in v]
            elif k in ("$defs", "definitions"):
                continue
            elif k == "allOf" and isinstance(av, list) and isinstance(v, list):
                out[k] = list(av) + list(v)
            elif k == "not":  # not A and not B = not (A or B)
                if all(isinstance(x, dict) and set(x) & ASSERTING == {"type"} for x in (av, v)):
                    ts = [x["type"] if isinstance(x["type"], list) else [x["type"]] for x in (av, v)]
                    out[k] = {"type": sorted(set(ts[0]) | set(ts[1]))}
                else:
                    out[k] = {"anyOf": [av, v]}
            elif k == "uniqueItems":
                out[k] = bool(av) or bool(v)
            elif k == "multipleOf" and isinstance(av, int) and isinstance(v, int):
                out[k] = av * v // math.gcd(av, v)
            else:
                self.unsupported(ptr, "allOf", f"cannot merge two different {k!r} constraints")
        # properties listed by one side are subject to the other side's additionalProperties
        for one, other in ((a, b), (b, a)):
            if "additionalProperties" in other or "patternProperties" in other:
                extra = [
                    k for k in one.get("properties", {}) if k not in other.get("properties", {})
                ]
                if extra and "patternProperties" in other:
                    self.unsupported(
                        ptr,
                        "allOf",
                        "cannot merge properties with another branch's patternProperties",
                    )
                elif extra:
                    addl = other["additionalProperties"]
                    props = dict(out["properties"])
                    for k in extra:
                        props[k] = {"allOf": [props[k], addl]}
                    out["properties"] = props
        for one, other in ((a, b), (b, a)):
            if "additionalProperties" in other and other["additionalProperties"] not in (True, {}):
                req = [
                    k
                    for k in one.get("required", [])
                    if k not in other.get("properties", {}) and k not in one.get("properties", {})
                ]
                if req:
                    props = dict(out.get("properties", {}))
                    for k in req:
                        props.setdefault(k, other["additionalProperties"])
                    out["properties"] = props
        return out

    # ------------------------------------------------------------------ enum / const
    def enum_part(self, node, ptr, base) -> Part:
        vals = [node["const"]] if "const" in node else list(node["enum"])
        if "const" in node and "enum" in node:
            vals = [v for v in vals if any(_json_eq(v, e) for e in node["enum"])]
        check = {
            k: v for k, v in node.items() if k not in ANNOTATIONS or k in ("$defs", "definitions")
        }
        needs_check = any(k not in ("enum", "const", "$defs", "definitions") for k in check)
        part = Part()
        seen: set = set()
        strings: list[str] = []
        for v in vals:
            key = _json_key(v)
            if key in seen:
                continue
            seen.add(key)
            if needs_check and not self.literal_ok(node, v):
                continue
            if isinstance(v, str):  # gathered and added at once: Part.union is linear per call
                strings.append(v)
                continue
            part = part.union(self.literal(v))
        if strings:
            part = part.union(Part(strings=[_quoted_literal(v) for v in strings], types={"string"}))
        return part

    def literal(self, v) -> Part:
        t = _type_of(v)
        if v is None:
            return Part(lits={"null"}, types={"null"})
        if isinstance(v, bool):
            return Part(lits={"true" if v else "false"}, types={"boolean"})
        if isinstance(v, str):
            return Part(strings=[_quoted_literal(v)], types={"string"})
        if isinstance(v, (int, float)):
            if t == "integer":
                i = int(v)
                ns = (
                    NumSet(pos=[(i, i, Z)])
                    if i > 0
                    else NumSet(neg=[(-i, -i, Z)])
                    if i < 0
                    else NumSet(pos=[(0, 0, Z)], neg=[(0, 0, Z)])
                )
                return Part(nums=ns, types={"number", "integer"})
            if math.isfinite(v):
                return Part(nums=NumSet(literals=[_lit(repr(v))]), types={"number"})
            return Part()
        if isinstance(v, list):
            lk, rk, c = self.punct("["), self.punct("]"), self.punct(",")
            if not v:
                return Part(rules=[self.rule([f"{lk} {rk}"])], types={"array"})
            items = [self.value_rule(self.literal(x)) for x in v]
            return Part(
                rules=[self.rule([f"{lk} " + f" {c} ".join(items) + f" {rk}"])], types={"array"}
            )
        if isinstance(v, dict):
            lb, rb, c, col = self.punct("{"), self.punct("}"), self.punct(","), self.punct(":")
            if not v:
                return Part(rules=[self.rule([f"{lb} {rb}"])], types={"object"})
            members = [
                f"{self.key_term(k)} {col} {self.value_rule(self.literal(x))}" for k, x in v.items()
            ]
            return Part(
                rules=[self.rule([f"{lb} " + f" {c} ".join(members) + f" {rb}"])], types={"object"}
            )
        raise GrammarError(f"enum/const value {v!r} is not JSON")

    def key_term(self, key: str) -> str:
        return self.term(_quoted_literal(key))

    # ------------------------------------------------------------------ types
    def typed_part(self, node, ptr, base) -> Part:
        node = self.uneval_local(node)
        t = node.get("type")
        types = set(_TYPES) if t is None else ({t} if isinstance(t, str) else set(t))
        if "integer" in types and "number" in types:
            types.discard("integer")
        excluded: list[str] = []  # decoded-string patterns `not` rules out
        if "not" in node:
            types = self.not_types(node["not"], types, _ptr(ptr, "not"), excluded)
        for kw, applies in UNSUPPORTED.items():
            if kw in node and (
                applies is None or applies in types or (applies == "number" and "integer" in types)
            ):
                if kw == "uniqueItems" and (
                    node[kw] is False
                    or (isinstance(node.get("maxItems"), int) and node["maxItems"] <= 1)
                    or self.unique_values(node, base, ptr) is not None
                ):
                    continue  # nothing to check, or enforced by array_rule
                if kw == "if" and "then" not in node and "else" not in node:
                    continue
                if kw.startswith("dependen") and _dep_entries(node[kw]) is not None:
                    continue  # enforced by object_rule
                self.unsupported(
                    _ptr(ptr, kw), kw, f"{kw} cannot be enforced by a context-free grammar here"
                )
        if t is None and not any(k in node for k in _TYPE_KEYWORDS) and types == set(_TYPES):
            return Part(any=True, types=set(_TYPES))
        part = Part()
        if "null" in types:
            part = part.union(Part(lits={"null"}, types={"null"}))
        if "boolean" in types:
            part = part.union(Part(lits={"true", "false"}, types={"boolean"}))
        if "number" in types or "integer" in types:
            if getattr(self, "_not_integer", False):
                self._not_integer = False
                if "number" in types:
                    part = part.union(self.non_integer_part(node, ptr))
            else:
                part = part.union(self.number_part(node, ptr, integer="number" not in types))
        if "string" in types:
            strings = self.string_part(node, ptr)
            if excluded:
                strings = self.strings_excluding(strings, excluded, _ptr(ptr, "not"))
            part = part.union(strings)
        if "array" in types:
            r = self.array_rule(node, ptr, base)
            if r:
                part = part.union(Part(rules=[r], types={"array"}))
        if "object" in types:
            r = self.object_rule(node, ptr, base)
            if r:
                part = part.union(Part(rules=[r], types={"object"}))
        return part

    def not_types(self, sub, types: set, ptr: str, excluded: list[str]) -> set:
        """The types `not: sub` leaves; string values it rules out go to `excluded` (patterns)."""
        if sub is True or sub == {}:
            return set()
        if sub is False:
            return types
        if isinstance(sub, dict) and "$ref" in sub and len(set(sub) - ANNOTATIONS) == 1:
            sub = self.deref(sub, "", ptr)[0]
        inner = set(sub) - ANNOTATIONS if isinstance(sub, dict) else set()
        if inner and inner <= {"type", "enum", "const", "pattern"} and sub.get("type", "string") == "string":
            if "pattern" in inner and not inner & {"enum", "const"} and isinstance(sub["pattern"], str):
                excluded.append(sub["pattern"])
                # without `type`, every non-string passes the pattern, so `not` rules it out
                return types if "type" in inner else types & {"string"}
            if "pattern" not in inner and len(inner & {"enum", "const"}) == 1:
                values = [sub["const"]] if "const" in inner else sub["enum"]
                if isinstance(values, list):
                    others = {_type_of(v) for v in values if not isinstance(v, str)}
                    others = {"number" if t == "integer" else t for t in others}
                    hit = {"number" if t == "integer" else t for t in types} & others
                    if "type" in inner or not hit:
                        strs = [v for v in values if isinstance(v, str)]
                        if strs:
                            excluded.append("^(?:" + "|".join(re.escape(v) for v in strs) + ")$")
                        return types
        if isinstance(sub, dict) and set(sub) - ANNOTATIONS <= {"type"} and "type" in sub:
            t = sub["type"]
            ban = {t} if isinstance(t, str) else set(t)
            if "integer" in ban and "number" not in ban and "number" in types:
                self._not_integer = True
                ban.discard("integer")
            t = sub["type"]
            ban = {t} if isinstance(t, str) else set(t)
            if "number" in ban:
                ban.add("integer")
            return types - ban
        self.unsupported(ptr, "not", "only `not` of a type (or of true/false) is supported")
        return types

    def strings_excluding(self, part: Part, patterns: list[str], ptr: str) -> Part:
        """The strings of `part` that match none of `patterns` (searches on the decoded string):
        each string regex gets a negative lookahead per pattern, an automaton product with its
        complement in the regex compiler (exact for every JSON encoding of a string)."""
        # the exclusions see the encodings `_encoded_class` writes (raw, short escapes, \u00XX for
        # control characters), so the strings kept are restricted to exactly those: a \uXXXX
        # spelling of an excluded value could otherwise slip through
        heads = ['(?="(?:[^\\x22\\\\\\x00-\\x1f]|\\\\[\\x22\\\\/bfnrt]|\\\\u00[01][0-9a-fA-F])*")']
        for pat in patterns:
            try:
                rx, _w = translate_pattern(pat)
            except _PatternError as exc:
                self.unsupported(ptr, "not", str(exc))
                return part
            heads.append(f'(?!"{rx}")')
        if part.rules or part.any:
            self.unsupported(ptr, "not", "`not` of string values next to these string keywords")
            return part
        kept = ["".join(heads) + s for s in part.strings]
        return Part(strings=[s for s in kept if not self.matches_nothing(s)], types=part.types)

    # ------------------------------------------------------------------ numbers
    def number_part(self, node, ptr, integer: bool) -> Part:
        mult = node.get("multipleOf")
        if mult is not None and _decimal(mult).denominator != 1:
            fracs = self.multiple_fractions(_decimal(mult), _ptr(ptr, "multipleOf"))
            part = self.number_part({k: v for k, v in node.items() if k != "multipleOf"}, ptr, integer)
            if fracs is None or integer or part.nums.empty():
                return part  # (every integer is a multiple of d / 10^k when d divides 10^k)
            ns = part.nums
            if ns.full:
                ns = NumSet(pos=[(0, None, ANYF)], neg=[(0, None, ANYF)])
            return Part(nums=NumSet(literals=[ns.regex(fracs)]), types=part.types)
        lo, lo_ex, hi, hi_ex = None, False, None, False
        mn, mx = node.get("minimum"), node.get("maximum")
        emn, emx = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")
        if isinstance(emn, bool):  # draft-04
            emn = mn if emn and mn is not None else None
            if emn is not None:
                mn = None
        if isinstance(emx, bool):
            emx = mx if emx and mx is not None else None
            if emx is not None:
                mx = None

        def fr(x):
            return Fraction(x) if not isinstance(x, float) or math.isfinite(x) else None

        for val, ex in ((mn, False), (emn, True)):
            if (
                val is not None
                and fr(val) is not None
                and (lo is None or fr(val) > lo or (fr(val) == lo and ex))
            ):
                lo, lo_ex = fr(val), ex
        for val, ex in ((mx, False), (emx, True)):
            if (
                val is not None
                and fr(val) is not None
                and (hi is None or fr(val) < hi or (fr(val) == hi and ex))
            ):
                hi, hi_ex = fr(val), ex
        types = {"integer"} if integer else {"number", "integer"}
        if mult is not None:
            m = _decimal(mult)
            if m == 1:
                integer = True
            else:
                return self.multiple_part(int(m), lo, lo_ex, hi, hi_ex, ptr, types)
        if lo is None and hi is None:
            if integer:
                return Part(nums=NumSet(pos=[(0, None, Z)], neg=[(0, None, Z)]), types=types)
            return Part(nums=NumSet(full=True), types=types)
        if integer:
            ilo = None if lo is None else (math.floor(lo) + 1 if lo_ex else math.ceil(lo))
            ihi = None if hi is None else (math.ceil(hi) - 1 if hi_ex else math.floor(hi))
            pos = _mag_pieces(ilo, False, ihi, False, True)
            neg = _mag_pieces(
                None if ihi is None else -ihi, False, None if ilo is None else -ilo, False, True
            )
            return Part(nums=NumSet(pos=pos, neg=neg), types=types)
        if any(v is not None and v.denominator != 1 for v in (lo, hi)):
            from decimal import Decimal

            def dec(v):
                return (
                    None
                    if v is None
                    else Decimal(int(v))
                    if v.denominator == 1
                    else Decimal(repr(float(v)))
                )

            dlo, dhi = dec(lo), dec(hi)
            pos = _mag_pieces_dec(dlo, lo_ex, dhi, hi_ex)
            neg = _mag_pieces_dec(
                None if dhi is None else -dhi, hi_ex, None if dlo is None else -dlo, lo_ex
            )
            if pos is None or neg is None:
                kw = "minimum" if lo is not None and lo.denominator != 1 else "maximum"
                self.unsupported(_ptr(ptr, kw), kw, "both bounds fall inside the same integer")
                return Part(nums=NumSet(full=True), types=types)
            ns = NumSet(pos=pos[0], neg=neg[0], pos_x=pos[1], neg_x=neg[1])
            return Part(nums=ns, types=types)
        ilo = None if lo is None else int(lo)
        ihi = None if hi is None else int(hi)
        pos = _mag_pieces(ilo, lo_ex, ihi, hi_ex, False)
        neg = _mag_pieces(
            None if ihi is None else -ihi, hi_ex, None if ilo is None else -ilo, lo_ex, False
        )
        return Part(nums=NumSet(pos=pos, neg=neg), types=types)

    def multiple_fractions(self, m: Fraction, ptr: str) -> list[str] | None:
        """multipleOf d / 10^k with d dividing 10^k: a number is a multiple exactly when its fraction
        digits (padded to k) are a multiple of d, whatever its integer part. Returns those digit
        strings (trailing zeros stripped); None (after the strict error) for other divisors."""
        k = 0
        while (m * 10**k).denominator != 1 and k <= 18:
            k += 1
        d = m * 10**k
        if d.denominator != 1 or 10**k % int(d) or 10**k // int(d) > MAX_FRACTIONS:
            self.unsupported(
                ptr,
                "multipleOf",
                f"multipleOf {float(m)!r} is not supported (fractional divisors must be d / 10^k "
                f"with d dividing 10^k, at most {MAX_FRACTIONS} fractions)",
            )
            return None
        return [format(j * int(d), f"0{k}d").rstrip("0") for j in range(10**k // int(d))]

    def non_integer_part(self, node, ptr) -> Part:
        """Numbers with a nonzero fraction (`not: {type: integer}`), without bounds."""
        if any(
            k in node
            for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
        ):
            self.unsupported(
                _ptr(ptr, "not"), "not", "`not: {type: integer}` together with numeric bounds"
            )
        return Part(nums=NumSet(pos=[(0, None, NZ)], neg=[(0, None, NZ)]), types={"number"})

    def multiple_part(self, m: int, lo, lo_ex, hi, hi_ex, ptr, types) -> Part:
        """Integers that are multiples of m, by a digit automaton (right-linear rules)."""
        if lo is not None or hi is not None:
            # bounded: enumerate when small
            if lo is not None and hi is not None:
                a = math.ceil(lo) + (1 if lo_ex and lo.denominator == 1 else 0)
                b = math.floor(hi) - (1 if hi_ex and hi.denominator == 1 else 0)
                vals = (
                    [x for x in range(a - a % m if a % m else a, b + 1, m) if x >= a]
                    if b - a < 100_000
                    else None
                )
                if vals is not None and len(vals) <= 256:
                    p = Part()
                    for x in vals:
                        p = p.union(self.literal(x))
                    return p
            self.unsupported(
                _ptr(ptr, "multipleOf"),
                "multipleOf",
                "multipleOf together with wide numeric bounds is not supported",
            )
            return Part(nums=NumSet(pos=[(0, None, Z)], neg=[(0, None, Z)]), types=types)
        if m > 1000:
            self.unsupported(
                _ptr(ptr, "multipleOf"), "multipleOf", "multipleOf above 1000 is not supported"
            )
            return Part(nums=NumSet(pos=[(0, None, Z)], neg=[(0, None, Z)]), types=types)
        # state r = value mod m; tail rules D_r: digit D_r' | (end when r == 0)
        names = [self.new_name() for _ in range(m)]
        for r in range(m):
            by_target: dict[int, list[int]] = {}
            for d in range(10):
                by_target.setdefault((10 * r + d) % m, []).append(d)
            alts = [
                f"{self.term(self.digit_class(ds))} {names[t]}"
                for t, ds in sorted(by_target.items())
            ]
            if r == 0:
                alts.append("")
            self.define(names[r], alts)
        firsts: dict[int, list[int]] = {}
        for d in range(1, 10):
            firsts.setdefault(d % m, []).append(d)
        nonzero = self.rule(
            [f"{self.term(self.digit_class(ds))} {names[t]}" for t, ds in sorted(firsts.items())]
        )
        zero = self.term("0")
        minus = self.term("-")
        rule = self.rule([zero, nonzero, f"{minus} {nonzero}"])
        return Part(rules=[rule], types={"integer"}, digit_rule=rule)

    @staticmethod
    def digit_class(ds: list[int]) -> str:
        return str(ds[0]) if len(ds) == 1 else "[" + "".join(map(str, ds)) + "]"

    # ------------------------------------------------------------------ strings
    def string_part(self, node, ptr) -> Part:
        mn = int(node.get("minLength", 0))
        mx = node.get("maxLength")
        mx = None if mx is None else int(mx)
        pattern, fmt = node.get("pattern"), node.get("format")
        bodies: list[tuple[str, tuple, str]] = []  # (regex, width, keyword)
        if fmt is not None:
            if fmt in FORMATS:
                rx, wlo, whi = FORMATS[fmt]
                bodies.append((rx, (wlo, whi), "format"))
            elif fmt in KNOWN_FORMATS:
                self.unsupported(_ptr(ptr, "format"), "format", f"format {fmt!r} is not supported")
        if pattern is not None:
            try:
                rx, width = translate_pattern(pattern)
                bodies.append((rx, width, "pattern"))
            except _PatternError as exc:
                self.unsupported(_ptr(ptr, "pattern"), "pattern", f"pattern {pattern!r}: {exc}")
        if mx is not None and mn > mx:
            return Part()
        if len(bodies) > 1:
            self.unsupported(
                _ptr(ptr, "pattern"), "pattern", "pattern together with format cannot be combined"
            )
            bodies = bodies[:1]
        if not bodies:
            if mn == 0 and mx is None:
                return Part(strings=[JSON_STRING], types={"string"})
            if max(mn, mx or 0) > MAX_STRING_LENGTH_BOUND:
                self.unsupported(ptr, "maxLength", "string length bounds too large")
                return Part(strings=[JSON_STRING], types={"string"})
            rep = f"{{{mn},}}" if mx is None else f"{{{mn},{mx}}}"
            return Part(strings=[f'"{CHAR_ONE}{rep}"'], types={"string"})
        rx, width, kw = bodies[0]
        if mn > 0 or mx is not None:
            if (
                width is not None
                and width[0] >= mn
                and (mx is None or (width[1] is not None and width[1] <= mx))
            ):
                pass  # the length bounds are implied
            elif kw == "pattern" and (rx2 := _length_bounded(pattern, mn, mx)) is not None:
                if rx2 == "(?!)":
                    return Part()
                rx = rx2
            elif max(mn, mx or 0) > MAX_PATTERN_LENGTH_BOUND:
                kwl = "maxLength" if mx is not None else "minLength"
                self.unsupported(
                    _ptr(ptr, kwl),
                    kwl,
                    f"length bounds above {MAX_PATTERN_LENGTH_BOUND} together with {kw} are not supported",
                )
            else:
                # pattern AND length: a leading lookahead that counts the code points up to the
                # closing quote; the regex compiler builds the product automaton (re_compile.py)
                rep = f"{{{mn},}}" if mx is None else f"{{{mn},{mx}}}"
                return Part(strings=[f'(?="{_LEN_UNIT}{rep}")"{rx}"'], types={"string"})
        return Part(strings=[f'"{rx}"'], types={"string"})

    # ------------------------------------------------------------------ arrays
    def array_rule(self, node, ptr, base) -> str | None:
        prefix, prefix_ptr = [], ""
        items: Any = True
        items_ptr = _ptr(ptr, "items")
        if "prefixItems" in node:
            prefix, prefix_ptr = node["prefixItems"], "prefixItems"
            items = node.get("items", True)
        elif isinstance(node.get("items"), list):
            prefix, prefix_ptr = node["items"], "items"
            items, items_ptr = node.get("additionalItems", True), _ptr(ptr, "additionalItems")
        elif "items" in node:
            items = node["items"]
        if items is not None and not isinstance(items, (dict, bool)):
            raise self.malformed(items_ptr, "items must be a schema")
        mn = int(node.get("minItems", 0))
        mx = node.get("maxItems")
        mx = None if mx is None else int(mx)
        if mx is not None and mx > MAX_REPEAT_EXPANSION >= max(mn, len(prefix)):
            # generated up to the cap: every array the grammar accepts is still valid (the longer
            # ones are not generated, a documented restriction like the property order)
            mx = MAX_REPEAT_EXPANSION
        if max(mn, len(prefix), mx or 0) > MAX_REPEAT_EXPANSION and (
            mx is not None or mn > MAX_REPEAT_EXPANSION
        ):
            self.unsupported(
                _ptr(ptr, "maxItems" if mx is not None else "minItems"),
                "maxItems" if mx is not None else "minItems",
                f"array bounds above {MAX_REPEAT_EXPANSION} are not expanded",
            )
            mx = None if mx is not None and mx > MAX_REPEAT_EXPANSION else mx
            mn = min(mn, MAX_REPEAT_EXPANSION)
        if node.get("uniqueItems") is True and (mx is None or mx > 1):
            vals = self.unique_values(node, base, ptr)
            if vals is not None:
                return self.unique_array(vals, mn, mx)
        slots = [self.part(s, _ptr(ptr, prefix_ptr, i), base) for i, s in enumerate(prefix)]
        item_part = self.part(items, items_ptr, base)
        slot_rules = [None if p.empty() else self.value_rule(p) for p in slots]
        item_rule = None if item_part.empty() else self.value_rule(item_part)
        lk, rk, c = self.punct("["), self.punct("]"), self.punct(",")
        n_fixed = max(len(prefix), mn)
        if mx is not None:
            n_fixed = min(max(n_fixed, mx), max(mx, 0))

        # E_j: elements from position j (0-based) on; j > 0 means a comma precedes each element
        def slot(j):
            return slot_rules[j] if j < len(prefix) else item_rule

        tail_start = max(len(prefix), mn)
        nxt: str | None = None
        # uniform unbounded tail after position tail_start
        last = n_fixed if mx is not None else tail_start
        if mx is None:
            if item_rule is not None:
                tail = self.rule([f"({c} {item_rule})*"]) if tail_start > 0 else None
                nxt = tail if tail_start > 0 else self.rule(["", f"{item_rule} ({c} {item_rule})*"])
            else:
                nxt = self.rule([""]) if tail_start >= mn else None
        else:
            nxt = self.rule([""]) if last >= mn else None
        for j in range(last - 1, -1, -1):
            s = slot(j)
            alts = []
            if s is not None and nxt is not None:
                alts.append(f"{c} {s} {nxt}" if j > 0 else f"{s} {nxt}")
            if j >= mn:
                alts.append("")
            nxt = self.rule(alts) if alts else None
        if nxt is None:
            return None
        return self.rule([f"{lk} {nxt} {rk}"])

    def unique_values(self, node, base, ptr) -> list | None:
        """The values the items may take when they are a few scalars (enum/const, boolean or
        null items), so that uniqueItems is a grammar over subsets; None otherwise."""
        if "prefixItems" in node or isinstance(node.get("items"), list):
            return None
        items, ibase = self.deref(node.get("items", True), base, _ptr(ptr, "items"))
        if not isinstance(items, dict):
            return None
        vals = self._const_values(items, ibase, ptr)
        if vals is None:
            t = items.get("type")
            t = [t] if isinstance(t, str) else t
            if set(items) & ASSERTING != {"type"} or not set(t) <= {"boolean", "null"}:
                return None
            vals = ([True, False] if "boolean" in t else []) + ([None] if "null" in t else [])
        out, seen = [], set()
        for v in vals:
            if isinstance(v, (list, dict)):
                return None
            if _json_key(v) not in seen and self.literal_ok(items, v):
                seen.add(_json_key(v))
                out.append(v)
        return out if len(out) <= MAX_UNIQUE_VALUES else None

    def unique_array(self, vals: list, mn: int, mx: int | None) -> str | None:
        """Arrays of distinct values from `vals`: the state is the set of values used so far."""
        lk, rk, c = self.punct("["), self.punct("]"), self.punct(",")
        terms = [self.value_rule(self.literal(v)) for v in vals]
        memo: dict[int, str | None] = {}

        def after(used: int) -> str | None:  # at least one element emitted
            if used not in memo:
                cnt = used.bit_count()
                alts = [""] if cnt >= mn else []
                if mx is None or cnt < mx:
                    for i, t in enumerate(terms):
                        if not used >> i & 1 and (nx := after(used | 1 << i)) is not None:
                            alts.append(f"{c} {t} {nx}")
                memo[used] = self.rule(alts) if alts else None
            return memo[used]

        alts = [f"{lk} {rk}"] if mn == 0 else []
        if mx is None or mx > 0:
            for i, t in enumerate(terms):
                if (nx := after(1 << i)) is not None:
                    alts.append(f"{lk} {t} {nx} {rk}")
        return self.rule(alts) if alts else None

    # ------------------------------------------------------------------ objects
    def property_names(self, node, ptr, base) -> str | Literal[False] | None:
        """propertyNames as one quoted-string regex every key must match (None: any key, False:
        no key); extra keys get it as a lookahead, listed names are checked here."""
        pn = node.get("propertyNames")
        if pn is None or pn is True or pn == {}:
            return None
        where = _ptr(ptr, "propertyNames")
        part = self.part(pn, where, base)
        if part.any:
            return None
        if not part.strings:
            return False
        if any(s.startswith("(?") for s in part.strings):
            self.unsupported(
                where, "propertyNames", "propertyNames with length bounds and a pattern/format, or a `not`"
            )
            return None
        strs = part.strings
        rx = strs[0] if len(strs) == 1 else '"(?:' + "|".join(s[1:-1] for s in strs) + ')"'
        return None if rx == JSON_STRING else rx

    def object_rule(self, node, ptr, base) -> str | None:
        props = node.get("properties", {})
        required = list(node.get("required", []))
        addl = node.get("additionalProperties", True)
        if addl is not None and not isinstance(addl, (dict, bool)):
            raise self.malformed(
                _ptr(ptr, "additionalProperties"), "additionalProperties must be a schema"
            )
        pats = node.get("patternProperties", {})
        if addl in (True, {}) and all(s in (True, {}) for s in pats.values()):
            pats = {}
        lb, rb, c, col = self.punct("{"), self.punct("}"), self.punct(","), self.punct(":")
        compiled_pats = []
        for p in pats:
            try:
                compiled_pats.append((p, re.compile(p)))
            except re.error:
                self.unsupported(
                    _ptr(ptr, "patternProperties", p),
                    "patternProperties",
                    f"pattern {p!r} is not supported",
                )
        keys = list(props) + [k for k in required if k not in props]
        names = self.property_names(node, ptr, base)
        members = []  # (key, required, value rule or None)
        member_subs: dict = {}  # key -> the subschemas its value must satisfy
        for k in keys:
            if names is not None and (
                names is False or not re.fullmatch(names, f'"{json_body(k)}"')
            ):
                if k in required:
                    return None  # a required name that propertyNames forbids
                continue
            subs, sptrs = [], []
            if k in props:
                subs.append(props[k])
                sptrs.append(_ptr(ptr, "properties", k))
            for p, cp in compiled_pats:
                if cp.search(k):
                    subs.append(pats[p])
            if k not in props and len(subs) == 0:
                subs.append(addl)
            member_subs[k] = subs
            if len(subs) == 1:
                part = self.part(
                    subs[0], sptrs[0] if sptrs else _ptr(ptr, "additionalProperties"), base
                )
            else:
                part = self.part({"allOf": subs}, sptrs[0] if sptrs else ptr, base)
            is_req = k in required
            if part.empty():
                if is_req:
                    return None
                continue
            members.append((k, is_req, f"{self.key_term(k)} {col} {self.value_rule(part)}"))
        listed = set(keys)
        # extra members: (key terminal, value rule)
        extras: list[str] = []
        if names is False:
            pass  # propertyNames allows no key
        elif pats:
            # keys matching a pattern take its schema; keys matching none and not listed take
            # additionalProperties (negative lookaheads: an automaton product with complements)
            regexes, shadowed = [], {}
            for p, cp in compiled_pats:
                try:
                    rx, _w = translate_pattern(p)
                except _PatternError as exc:
                    self.unsupported(
                        _ptr(ptr, "patternProperties", p), "patternProperties", str(exc)
                    )
                    continue
                regexes.append((p, '"' + rx + '"'))
                # listed names it matches are members above (under properties AND pattern); as
                # extra keys they are excluded by a lookahead (an automaton product)
                shadowed[p] = {k for k in listed if cp.search(k)}
            if len(regexes) > 1 and not self.disjoint([r for _p, r in regexes]):
                self.unsupported(
                    _ptr(ptr, "patternProperties"),
                    "patternProperties",
                    "overlapping patternProperties patterns are not supported",
                )
                regexes = regexes[:1]
            for p, rx in regexes:
                vp = self.part(pats[p], _ptr(ptr, "patternProperties", p), base)
                if shadowed[p]:
                    rx = f"(?={_key_excluding(shadowed[p], raw=self.raw_keys)}){rx}"
                if names is not None:
                    rx = f"(?={names}){rx}"
                if not vp.empty():
                    extras.append(f"{self.term(rx)} {col} {self.value_rule(vp)}")
            if addl is not False and len(regexes) == len(compiled_pats):
                vp = self.part(addl, _ptr(ptr, "additionalProperties"), base)
                # the lookaheads compare spellings, the validator decoded keys: an additional key
                # is spelled raw (no escapes; then the spelling is the decoded key), or a key
                # matching a pattern only through its escapes would slip past them
                key = (f'(?="{RAW}*")' + "".join(f"(?!{rx})" for _p, rx in regexes)
                       + _key_excluding(listed, raw=self.raw_keys))
                if names is not None:
                    key = f"(?={names}){key}"
                if not vp.empty() and not self.matches_nothing(key):  # e.g. a pattern ".*"
                    extras.append(f"{self.term(key)} {col} {self.value_rule(vp)}")
        elif addl is not False:
            vp = self.part(addl, _ptr(ptr, "additionalProperties"), base)
            key = _key_excluding(listed, raw=self.raw_keys)
            if names is not None:
                key = f"(?={names}){key}"
            if not vp.empty():
                extras.append(f"{self.term(key)} {col} {self.value_rule(vp)}")
        minp = int(node.get("minProperties", 0))
        maxp = node.get("maxProperties")
        n_req = sum(1 for m in members if m[1])
        if minp > max(n_req, 1):
            self.unsupported(
                _ptr(ptr, "minProperties"),
                "minProperties",
                "minProperties above 1 is not supported",
            )
            minp = 0
        if maxp is not None:
            maxp = int(maxp)
            if n_req > maxp:
                return None
            if maxp == 0:
                return self.rule([f"{lb} {rb}"])
            if maxp == 1 and not any(k.startswith("dependen") for k in node):
                # at most one member: the required one, or any single listed or extra one
                req = [m[2] for m in members if m[1]]
                alts = req or [m[2] for m in members] + extras
                alts = [f"{lb} {a} {rb}" for a in alts]
                if minp == 0 and not req:
                    alts.append(f"{lb} {rb}")
                return self.rule(alts) if alts else None
            if extras or len(members) > maxp:
                self.unsupported(
                    _ptr(ptr, "maxProperties"),
                    "maxProperties",
                    "maxProperties is only supported when it is implied",
                )
        if minp > n_req and not members and not extras:
            return None
        found = self.dependencies(node, ptr, base, members, member_subs, listed, bool(extras))
        if found is None:
            return None
        deps, restrict = found
        if self.order == "any" and len(members) > 1:
            if len(members) > MAX_ANY_ORDER:
                self.unsupported(
                    ptr,
                    "property_order",
                    f"property_order='any' supports at most {MAX_ANY_ORDER} properties",
                )
            else:
                if restrict:
                    self.unsupported(
                        ptr, "property_order", "dependent schemas need property_order='schema'"
                    )
                return self.object_any(members, extras, minp, deps)
        ext_rule = self.rule(extras) if extras else None
        if deps:
            body = self.object_deps(members, ext_rule, minp, deps, restrict)
            return self.rule([f"{lb} {body} {rb}"]) if body else None
        # R_i: something emitted; F_i: nothing yet
        if ext_rule:
            r_next: str | None = self.rule([f"({c} {ext_rule})*"])
            f_next: str | None = self.rule([f"{ext_rule} {r_next}"] + ([""] if minp == 0 else []))
        else:
            r_next = self.rule([""])
            f_next = self.rule([""]) if minp == 0 else None
        for _k, req, mem in reversed(members):
            r_alts = [f"{c} {mem} {r_next}"]
            f_alts = [f"{mem} {r_next}"]
            if not req:
                r_alts.append(r_next)
                if f_next is not None:
                    f_alts.append(f_next)
            r_next = self.rule(r_alts)
            f_next = self.rule(f_alts)
        if f_next is None:
            return None
        return self.rule([f"{lb} {f_next} {rb}"])

    def dependencies(self, node, ptr, base, members, member_subs, listed, open_: bool):
        """dependentRequired / dependentSchemas (and draft-07 `dependencies`) as (member index ->
        indices of the members it needs, member index -> (trigger index, member text with the
        trigger's extra property schema)); None when the object cannot be satisfied. `members`
        is edited in place: a member whose needed key can never appear is removed, and a
        trigger with property schemas is moved before the first member they constrain."""
        raw: dict = {}
        for kw in ("dependencies", "dependentRequired", "dependentSchemas"):
            for k, (need, props) in (_dep_entries(node.get(kw)) or {}).items():
                r = raw.setdefault(k, (kw, [], {}))
                r[1].extend(need)
                for pk, pv in props.items():
                    r[2][pk] = {"allOf": [r[2][pk], pv]} if pk in r[2] else pv
        if not raw:
            return {}, {}
        required = set(node.get("required", []))
        for k, (kw, need, props) in raw.items():
            need[:] = [t for t in need if t not in required]  # always there anyway
            if not need and not props:
                continue
            if any(x not in listed for x in [k, *need, *props]) and open_:
                self.unsupported(
                    _ptr(ptr, kw, k), kw, "a dependency on a key that properties does not list"
                )
                raw[k] = (kw, [], {})
        names = [m[0] for m in members]
        for k, (_kw, _need, props) in raw.items():  # triggers go before what they constrain
            first = min((names.index(p) for p in props if p in names), default=len(names))
            if k in names and first < names.index(k):
                names.insert(first, names.pop(names.index(k)))
        members[:] = sorted(members, key=lambda m: names.index(m[0]))
        index = {m[0]: i for i, m in enumerate(members)}
        deps: dict[int, list[int]] = {}
        restrict: dict[int, tuple[int, str]] = {}
        dead = set()
        col = self.punct(":")
        for k, (kw, need, props) in raw.items():
            i = index.get(k)
            if i is None:
                continue  # k cannot appear
            js = [index.get(t) for t in need if t != k]
            if any(j is None for j in js):
                dead.add(i)  # a needed key cannot appear, so neither can k
            js = sorted({j for j in js if j is not None and not members[j][1]})
            if js:
                deps[i] = js
            for pk, pv in props.items():
                j = index.get(pk)
                if j is None:
                    continue  # pk cannot appear
                if j <= i or j in restrict:
                    self.unsupported(
                        _ptr(ptr, kw, k),
                        kw,
                        "dependent schemas on their own key, on a trigger or twice on one key",
                    )
                    continue
                sub = {"allOf": [*member_subs[pk], pv]}
                part = self.part(sub, _ptr(ptr, kw, k, "properties", pk), base)
                if part.empty():
                    if members[j][1]:
                        dead.add(i)
                    else:
                        deps.setdefault(i, [])
                        restrict[j] = (i, "")
                    continue
                restrict[j] = (i, f"{self.key_term(pk)} {col} {self.value_rule(part)}")
        if any(members[i][1] for i in dead):
            return None
        if dead:
            keep = [i for i in range(len(members)) if i not in dead]
            new_index = {old: new for new, old in enumerate(keep)}
            members[:] = [members[i] for i in keep]
            deps = {
                new_index[i]: [new_index[j] for j in js]
                for i, js in deps.items()
                if i in new_index and all(j in new_index for j in js)
            }
            restrict = {
                new_index[j]: (new_index[i], mem)
                for j, (i, mem) in restrict.items()
                if i in new_index and j in new_index
            }
        for i, _mem in restrict.values():
            deps.setdefault(i, [])
        relevant = set(deps) | {j for js in deps.values() for j in js}
        if len(relevant) > MAX_DEP_KEYS:
            kw = next(iter(raw.values()))[0]
            self.unsupported(
                _ptr(ptr, kw), kw, f"dependencies among more than {MAX_DEP_KEYS} properties"
            )
            return {}, {}
        return deps, restrict

    def object_deps(self, members, ext_rule, minp, deps, restrict) -> str | None:
        """The listed members in order, where a member with dependencies is emitted only with the
        members it needs, and a member after a trigger of a dependent schema takes the restricted
        value: the state is the set of relevant members emitted so far."""
        c = self.punct(",")
        n = len(members)
        needers = {j: [i for i, js in deps.items() if j in js] for j in range(n)}
        shaped = {i: [j for j, (t, _m) in restrict.items() if t == i] for i in deps}

        def live(i: int, pos: int) -> bool:  # does member i's presence matter from pos on?
            return (
                any(j >= pos for j in deps.get(i, []))
                or any(t >= pos for t in needers[i])
                or any(j >= pos for j in shaped.get(i, []))
            )

        if ext_rule:
            r_end = self.rule([f"({c} {ext_rule})*"])
            f_end = self.rule([f"{ext_rule} {r_end}"] + ([""] if minp == 0 else []))
        else:
            r_end = self.rule([""])
            f_end = self.rule([""]) if minp == 0 else None
        memo: dict = {}

        def chain(j: int, state: frozenset, first: bool) -> str | None:
            if j == n:
                return f_end if first else r_end
            key = (j, state, first)
            if key not in memo:
                _k, req, mem = members[j]
                if j in restrict and restrict[j][0] in state:
                    mem = restrict[j][1]  # "" when the restricted value is empty
                alts = []
                if mem and all(t in state for t in deps.get(j, []) if t < j):
                    nxt = chain(j + 1, frozenset(i for i in state | {j} if live(i, j + 1)), False)
                    if nxt is not None:
                        alts.append(f"{mem} {nxt}" if first else f"{c} {mem} {nxt}")
                if not req and not any(j in deps.get(t, []) for t in state):
                    nxt = chain(j + 1, frozenset(i for i in state if live(i, j + 1)), first)
                    if nxt is not None:
                        alts.append(nxt)
                memo[key] = self.rule(alts) if alts else None
            return memo[key]

        return chain(0, frozenset(), True)

    def object_any(self, members, extras, minp, deps=None) -> str:
        lb, rb, c = self.punct("{"), self.punct("}"), self.punct(",")
        n = len(members)
        req_mask = sum(1 << i for i, m in enumerate(members) if m[1])
        ext_rule = self.rule(extras) if extras else None
        memo: dict[tuple[int, bool], str] = {}

        def st(used: int, first: bool) -> str | None:
            key = (used, first)
            if key in memo:
                return memo[key]
            alts = []
            for i in range(n):
                if not used & (1 << i):
                    nx = st(used | (1 << i), False)
                    if nx is not None:
                        alts.append(("" if first else f"{c} ") + f"{members[i][2]} {nx}")
            if used & req_mask == req_mask and all(
                used & (1 << j) for i, js in (deps or {}).items() if used & (1 << i) for j in js
            ):
                if ext_rule:
                    tail = self.rule([f"({c} {ext_rule})*"])
                    alts.append(f"{ext_rule} {tail}" if first else tail)
                    if first and minp == 0:
                        alts.append("")
                elif not (first and minp > 0):
                    alts.append("")
            memo[key] = self.rule(alts) if alts else None
            return memo[key]

        body = st(0, True)
        return self.rule([f"{lb} {body} {rb}"]) if body else None

    def matches_nothing(self, regex: str) -> bool:
        """The regex's language is empty (lark takes such a terminal; our lexer refuses it)."""
        from .re_compile import compile_regex

        try:
            dfa = compile_regex(regex, time_budget_s=2.0)
        except GuideError:
            return False  # undecided here; the engine's own build reports it
        return dfa.initial == dfa.dead

    def disjoint(self, regexes: list[str]) -> bool:
        """No two of the regexes share a string; False (overlapping) when that cannot be decided."""
        from .bytedfa import intersects
        from .re_compile import compile_regex

        try:
            dfas = [compile_regex(r, time_budget_s=2.0) for r in regexes]
        except GuideError:
            return False
        return not any(intersects(a, b) for i, a in enumerate(dfas) for b in dfas[i + 1 :])


def _absolutize(node, base: str):
    """A copy of `node` whose relative $refs are made absolute against `base` (for inlining)."""
    if isinstance(node, list):
        return [_absolutize(x, base) for x in node]
    if not isinstance(node, dict):
        return node
    sid = node.get("$id")
    if isinstance(sid, str) and not sid.startswith("#"):
        base = urldefrag(_join(base, sid))[0]
    out = {}
    for k, v in node.items():
        if k == "$ref" and isinstance(v, str):
            out[k] = _join(base, v)
        elif k in ("enum", "const", "examples", "default"):
            out[k] = v
        else:
            out[k] = _absolutize(v, base)
    return out


_TYPE_KEYWORDS = frozenset(
    [
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "items",
        "prefixItems",
        "additionalItems",
        "minItems",
        "maxItems",
        "properties",
        "required",
        "additionalProperties",
        "patternProperties",
        "minProperties",
        "maxProperties",
        "propertyNames",
        "not",
    ]
) | frozenset(UNSUPPORTED)


def _dep_entries(value) -> dict | None:
    """`dependencies` / `dependentRequired` / `dependentSchemas` as key -> (keys it needs,
    {property: subschema} it imposes), when every entry is a list of keys or a schema with only
    `required` and `properties` (else None)."""
    if not isinstance(value, dict):
        return None
    out = {}
    for k, v in value.items():
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            out[k] = (list(v), {})
        elif (
            isinstance(v, dict)
            and set(v) & ASSERTING <= {"required", "properties"}
            and isinstance(v.get("properties", {}), dict)
            and isinstance(v.get("required", []), list)
            and all(isinstance(x, str) for x in v.get("required", []))
        ):
            out[k] = (list(v.get("required", [])), dict(v.get("properties", {})))
        elif v is True or v == {}:
            out[k] = ([], {})
        else:
            return None
    return out


def _unit(ch: str) -> str:
    """Regex for the canonical JSON spelling of one character (escaped where JSON requires it)."""
    return _lit(json_body(ch))


def _hex4(cp: int) -> str:
    """The four hex digits of a \\u escape of `cp`, either case."""
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{cp:04x}")


def _hex_class(digits: list[str]) -> str:
    """A character class of the given lowercase hex digits, in either case, with ranges."""
    if len(digits) == 16:
        return HEX
    runs: list[list[str]] = []
    for d in digits:  # runs of consecutive digits within 0-9 and within a-f
        if runs and int(d, 16) == int(runs[-1][-1], 16) + 1 and d.isalpha() == runs[-1][-1].isalpha():
            runs[-1].append(d)
        else:
            runs.append([d])
    parts = []
    for run in runs:
        for r in (run, [c.upper() for c in run]) if run[0].isalpha() else (run,):
            parts.append(r[0] if len(r) == 1 else f"{r[0]}{r[-1]}" if len(r) == 2 else f"{r[0]}-{r[-1]}")
    return "[" + "".join(parts) + "]"


def _hex_excluding(values: set[str], n: int) -> str | None:
    """Regex for n hex digits (either case) spelling a number whose lowercase digits are not in
    `values` (strings of n digits); None when every number is excluded."""
    if not values:
        return HEX if n == 1 else f"{HEX}{{{n}}}"
    firsts = sorted({v[0] for v in values})
    alts = []
    if n > 1:
        for d in firsts:
            sub = _hex_excluding({v[1:] for v in values if v[0] == d}, n - 1)
            if sub is not None:
                alts.append((f"[{d}{d.upper()}]" if d.isalpha() else d) + sub)
    rest = [d for d in "0123456789abcdef" if d not in firsts]
    if rest:
        cls = _hex_class(rest)
        alts.append(cls if n == 1 else cls + (HEX if n == 2 else f"{HEX}{{{n - 1}}}"))
    if not alts:
        return None
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


_SHORT_LETTER = {0x22: '"', 0x5C: "\\\\", 0x2F: "/", 8: "b", 12: "f", 10: "n", 13: "r", 9: "t"}


def _spellings(ch: str) -> str:
    """Regex for every JSON spelling of the BMP, non-surrogate character `ch`: raw (where JSON
    allows it), its short escape, or a \\u escape in either case."""
    cp = ord(ch)
    alts = []
    if cp >= 0x20 and cp not in (0x22, 0x5C):
        alts.append(_cp_esc(cp))
    if cp in _SHORT_ESC:
        alts.append(_SHORT_ESC[cp])
    alts.append("\\\\u" + _hex4(cp))
    return "(?:" + "|".join(alts) + ")"


def _other_unit(children: list[str]) -> str:
    """Regex for one JSON string unit (as CHAR_FULL spells it) that decodes to none of the BMP,
    non-surrogate `children` (a lone surrogate escape counts as a unit of its own)."""
    cps = [ord(c) for c in children]
    alts = []
    raw = _class(_minus([(0x20, MAXCP)], [(c, c) for c in cps] + _SPECIAL))
    if raw:
        alts.append(raw)
    short = [letter for cp, letter in _SHORT_LETTER.items() if cp not in cps]
    if short:
        alts.append("\\\\[" + "".join(short) + "]")
    hexes = _hex_excluding({f"{c:04x}" for c in cps}, 4)
    if hexes is not None:
        alts.append("\\\\u" + hexes)
    return "(?:" + "|".join(alts) + ")"


def _has_length_bounds(node) -> bool:
    """Whether minLength/maxLength appears anywhere in the schema document."""
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            if "maxLength" in cur or "minLength" in cur:
                return True
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)
    return False


def _key_excluding(listed: set, *, raw: bool = False) -> str:
    """A quoted-string regex for every key except the listed ones.

    A key decodes to one string however it is spelled: along the trie of listed names, each
    character may take any of its JSON spellings (raw, short escape, \\u escape), and the key
    leaves the trie at the first unit that decodes to none of the trie's next characters, after
    which any JSON spelling follows. Shape: Dev TAIL | End, where Dev walks the trie and leaves
    it by a differing unit, and End stops early at a non-listed prefix.

    Keys are never cut short by an escape: an excluded-keys terminal stays alive wherever a free
    string does, so it does not double the product lexer's states against counted strings (a
    terminal that dies on an escape splits every counter state in two). Names with characters
    outside the BMP (or lone surrogates) keep the older form, raw spelling up to the point of
    departure (sound, but a key spelled with escapes there is not accepted); so do tries whose
    exact form would exceed MAX_TERMINAL_CHARS, and callers asking for `raw` (schemas without
    length-bounded strings, where the smaller raw-only automaton is the better trade)."""
    if not listed:
        return JSON_STRING
    trie: dict = {}
    for k in sorted(listed):  # a fixed order: the same grammar text in every process
        node = trie
        for ch in k:
            node = node.setdefault(ch, {})
        node[None] = {}
    exact = not raw and all(ord(ch) <= 0xFFFF and not 0xD800 <= ord(ch) <= 0xDFFF for k in listed for ch in k)
    unit = _spellings if exact else _unit

    def dev(node: dict) -> str:
        children = [c for c in node if c is not None]
        alts = [unit(c) + dev(node[c]) for c in children]
        if exact:
            alts.append(_other_unit(children))
        else:
            other = _class(_minus([(0x20, MAXCP)], [(ord(c), ord(c)) for c in children] + _SPECIAL))
            if other:
                alts.append(other)
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    def end(node: dict) -> str | None:
        alts = []
        for c, child in node.items():
            if c is not None:
                sub = end(child)
                if sub is not None:
                    alts.append(unit(c) + sub)
        if None not in node:
            alts.append("")
        if not alts:
            return None
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    e = end(trie)
    body = f"{dev(trie)}{CHAR_FULL}*"
    regex = '"(?:' + body + ("|" + e if e is not None else "") + ')"'
    if exact and len(regex) > MAX_TERMINAL_CHARS:  # very many or long names: the raw-only form
        return _key_excluding(listed, raw=True)
    from .key_automaton import excluded_keys_dfa
    from .re_compile import register_builder

    names = frozenset(listed)

    def build(max_states: int):
        return excluded_keys_dfa(names, exact=exact, max_states=max_states)

    register_builder(regex, build)
    register_builder(f"lark:/{_lark_regex(regex)}/", build)  # as the grammar's terminal spells it
    return regex


# ----------------------------------------------------------------------------- public API


def _canonical_schema(schema):
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise GrammarError(f"schema is not valid JSON: {exc}") from None
    if isinstance(schema, type):
        try:
            from pydantic import BaseModel
        except ImportError:
            BaseModel = None
        if BaseModel is not None and issubclass(schema, BaseModel):
            schema = schema.model_json_schema()
        else:
            raise TypeError(f"cannot make a JSON schema from {schema!r}")
    if not isinstance(schema, (dict, bool)):
        raise GrammarError(
            f"a JSON schema must be an object or a boolean, not {type(schema).__name__}"
        )
    try:
        json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise GrammarError(f"schema is not JSON data: {exc}") from None
    return schema


def _ws_regex(whitespace: str) -> str:
    if whitespace == "compact":
        return ""
    if whitespace == "pretty":
        return _PRETTY_WS
    if not isinstance(whitespace, str):
        raise TypeError("whitespace must be 'compact', 'pretty' or a bounded regex string")
    _bounded_ws(whitespace)
    return f"(?:{whitespace})"


def _lalr_conflict(text: str) -> str | None:
    """lark's LALR(1) conflict message for the grammar, or None (no lexer is built: fast)."""
    import lark

    from .cfg import build_lark

    class _NoLexer(lark.lexer.Lexer):
        def __init__(self, lexer_conf) -> None:
            pass

        def lex(self, lexer_state, parser_state):  # pragma: no cover - never lexes
            raise NotImplementedError

    try:
        lk = build_lark(text, parser="lalr", lexer=_NoLexer, start="start")
    except lark.exceptions.GrammarError as exc:
        return str(exc).splitlines()[0]
    return _lexer_collision(lk)


def _lexer_collision(lk) -> str | None:
    """Two terminals that one parser state takes and that match a common string: the lexer picks
    one of them without the parser's say, so the other branch is lost for that string (e.g. an
    any-key object beside an object whose first key is "c": `{"c":1}` would be lexed for the
    first and rejected). Unions of object/array branches need their terminals disjoint."""
    from .bytedfa import intersects
    from .cfg import _terminal_regex
    from .regex import Regex

    patterns = {t.name: t for t in lk.terminals}
    dfas: dict = {}

    def dfa(name):
        if name not in dfas:
            dfas[name] = Regex(_terminal_regex(patterns[name])).byte_dfa()
        return dfas[name]

    checked: set = set()
    for row in lk.parser.parser.parser.parse_table.states.values():
        terms = sorted(sym for sym in row if sym in patterns)
        for i, a in enumerate(terms):
            for b in terms[i + 1 :]:
                if (a, b) in checked:
                    continue
                checked.add((a, b))
                if intersects(dfa(a), dfa(b)):
                    return f"terminals {a} /{patterns[a].pattern.value}/ and {b} /{patterns[b].pattern.value}/ both match some text"
    return None


def schema_to_lark(
    schema: dict | bool | str,
    *,
    strict: bool = True,
    whitespace: Literal["compact", "pretty"] | str = "compact",
    property_order: Literal["schema", "any"] = "schema",
    max_depth: int = MAX_DEPTH,
    max_rules: int = MAX_RULES,
) -> SchemaGrammar:
    """Compile a JSON Schema to lark grammar text (start rule `start`). `max_depth` bounds the
    nesting of subschemas, `max_rules` the grammar's size (docs/reliability.md)."""
    schema = _canonical_schema(schema)
    if property_order not in ("schema", "any"):
        raise ValueError("property_order must be 'schema' or 'any'")
    ws = _ws_regex(whitespace)
    widen: set[str] = set()
    for _attempt in range(8):
        comp = _Compiler(schema, strict, ws, property_order, max_depth, max_rules)
        comp.widen = widen
        try:
            part = comp.part(schema, "", "")
        except RecursionError:
            raise GrammarError("schema too deeply nested") from None
        if part.empty():  # unsatisfiable: a grammar with an empty language
            comp.warnings.append(("#", "", "the schema accepts no JSON value"))
            start = comp.term("[^\\s\\S]")
        else:
            start = comp.value_rule(part)
        text = comp.text(start)
        conflict = _lalr_conflict(text) if comp.multi_struct else None
        if conflict is None:
            return SchemaGrammar(text, comp.warnings)
        where = comp.multi_struct[0]
        kw = where.rsplit("/", 1)[-1]
        msg = f"the {kw} branches overlap in a way the LALR(1) parser and its lexer cannot decide ({conflict})"
        if strict:
            raise UnsupportedFeatureError(
                f"{msg} (keyword {kw!r} at {where})", feature=kw, where=where
            )
        widen |= set(comp.multi_struct)
    raise GrammarError(msg)


class JsonSchema(Constraint):
    """Text that is a JSON document valid against a JSON Schema (see docs/json_schema.md)."""

    disk_cacheable = False  # the CFG engine's compiled form is not pickled

    def __init__(
        self,
        schema,
        *,
        strict: bool = True,
        whitespace: str = "compact",
        property_order: str = "schema",
        max_depth: int = MAX_DEPTH,
        max_rules: int = MAX_RULES,
    ) -> None:
        self.schema = _canonical_schema(schema)
        self.options = {
            "strict": strict,
            "whitespace": whitespace,
            "property_order": property_order,
            "max_depth": max_depth,
            "max_rules": max_rules,
        }
        grammar = schema_to_lark(self.schema, **self.options)
        self.lark_text = grammar.lark_text
        self.warnings = grammar.warnings
        # key order is kept: with property_order="schema" it decides the grammar
        self._key = "json_schema:" + json.dumps(
            [self.schema, self.options], separators=(",", ":"), ensure_ascii=False
        )

    @property
    def key(self) -> str:
        return self._key

    def _compile(self, vocab) -> Compiled:
        from .cfg import Grammar

        # not through the compile cache again: one entry per schema, not two for one object
        return Grammar(self.lark_text)._compile(vocab)


def json_schema(
    schema,
    *,
    strict: bool = True,
    whitespace: str = "compact",
    property_order: str = "schema",
    max_depth: int = MAX_DEPTH,
    max_rules: int = MAX_RULES,
) -> JsonSchema:
    """A constraint for JSON valid against `schema` (dict, bool, JSON text or a pydantic model class).

    `max_depth` (subschema nesting) and `max_rules` (grammar size) bound the compile work."""
    js = JsonSchema(
        schema,
        strict=strict,
        whitespace=whitespace,
        property_order=property_order,
        max_depth=max_depth,
        max_rules=max_rules,
    )
    if js.warnings:
        lines = "\n".join(f"  {ptr}: {kw}: {msg}" for ptr, kw, msg in js.warnings)
        warnings.warn(
            f"json_schema ignored {len(js.warnings)} keyword(s) it cannot enforce:\n{lines}",
            GuideSchemaWarning,
            stacklevel=2,
        )
    return js


def json_value(*, whitespace: str = "compact") -> JsonSchema:
    """Any JSON value."""
    return JsonSchema(True, whitespace=whitespace)
