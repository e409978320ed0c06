"""Python regular expressions -> byte DFAs, with exact `re` semantics and bounded work.

Python's own parser (`re._parser`) gives the syntax tree, so the accepted syntax, the error
positions and the character classes are exactly those of `re` (Unicode `\\d`, `\\w`, `\\s` unless
`(?a)`; `(?i)`, `(?s)` and `(?x)` flags). The tree becomes a Thompson NFA over code-point ranges,
then a determinised byte DFA; a lookahead (positive or negative) that starts a top-level alternative becomes
the product of two DFAs (JSON Schema's length bounds next to a pattern). Every step is bounded:
NFA size (large counted repetitions), DFA states and wall-clock time, each with a clear
`GrammarError` instead of a hang.
"""

from __future__ import annotations

import functools
import re
import sys
import threading
import time
from collections.abc import Callable
from re import _constants as C  # type: ignore[attr-defined]  # Python >= 3.11
from re import _parser as sre_parse  # type: ignore[attr-defined]

import numpy as np

from ..errors import GrammarError, UnsupportedFeatureError
from .bytedfa import MAX_UNICODE, ByteDFA, complement, determinise, intersect, utf8_sequences

Ranges = tuple[tuple[int, int], ...]

DEFAULT_MAX_NFA_STATES = 100_000
DEFAULT_MAX_DFA_STATES = 50_000
DEFAULT_TIME_BUDGET_S = 10.0
_COUNTED_DIRECT = 16  # counted repeats from this bound on may take the direct construction

_UNSUPPORTED = {
    "GROUPREF": "backreference",
    "GROUPREF_EXISTS": "conditional group (?(id)yes|no)",
    "ASSERT": "lookaround assertion (?=...) / (?<=...)",
    "ASSERT_NOT": "negative lookaround assertion (?!...) / (?<!...)",
    "AT": "anchor or word boundary inside the pattern (^, $, \\A, \\Z, \\b, \\B)",
    "ATOMIC_GROUP": "atomic group (?>...)",
    "POSSESSIVE_REPEAT": "possessive repeat (*+, ++, ?+)",
}


def _normalise(ranges: list[tuple[int, int]]) -> Ranges:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _complement(ranges: Ranges) -> Ranges:
    out, start = [], 0
    for lo, hi in ranges:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= MAX_UNICODE:
        out.append((start, MAX_UNICODE))
    return tuple(out)


def _ranges_of(codepoints) -> Ranges:
    return _normalise([(c, c) for c in codepoints])


@functools.cache
def _unicode_category(name: str) -> Ranges:
    """The code points of `re`'s Unicode classes, read off the same predicates `re` uses."""
    test = {"digit": str.isdecimal, "space": str.isspace, "word": lambda ch: ch.isalnum() or ch == "_"}[name]
    return _ranges_of(c for c in range(sys.maxunicode + 1) if test(chr(c)))


_ASCII_CATEGORY = {
    "digit": _ranges_of(range(48, 58)),
    "space": _ranges_of(b" \t\n\r\f\v"),
    "word": _ranges_of(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"),
}


def _category(code: str, flags: int) -> Ranges:
    name = code.removeprefix("CATEGORY_").lower()
    negate = name.startswith("not_")
    name = name.removeprefix("not_")
    base = _ASCII_CATEGORY[name] if flags & C.SRE_FLAG_ASCII else _unicode_category(name)
    return _complement(base) if negate else base


@functools.cache
def _case_partners() -> dict[int, tuple[int, ...]]:
    """Code point -> every code point with the same simple lower or upper case (built once, for (?i))."""
    groups: dict[tuple[str, str], list[int]] = {}
    for c in range(sys.maxunicode + 1):
        ch = chr(c)
        low, up = ch.lower(), ch.upper()
        if low != ch or up != ch:
            groups.setdefault(("l", low), []).append(c)
            groups.setdefault(("u", up), []).append(c)
    partners: dict[int, set[int]] = {}
    for key, members in groups.items():
        text = key[1]
        if len(text) == 1:
            members = [*members, ord(text)]
        for c in members:
            partners.setdefault(c, set()).update(members)
    return {c: tuple(sorted(m)) for c, m in partners.items()}


def _fold(ranges: Ranges, flags: int) -> Ranges:
    """Under (?i) add every case partner (`k` also matches `K` and the Kelvin sign, as in `re`)."""
    if not flags & C.SRE_FLAG_IGNORECASE:
        return ranges
    ascii_only = bool(flags & C.SRE_FLAG_ASCII)
    partners = _case_partners()
    extra = []
    for lo, hi in ranges:
        if hi - lo > 0x3000:  # a huge class (usually a complement) already holds both cases
            continue
        for c in range(lo, min(hi, 127) + 1) if ascii_only else range(lo, hi + 1):
            extra.extend((p, p) for p in partners.get(c, ()) if not ascii_only or p < 128)
    return _normalise(list(ranges) + extra)


def _class(items, flags: int) -> Ranges:
    negate = False
    parts: list[tuple[int, int]] = []
    for op, arg in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            parts.append((arg, arg))
        elif name == "RANGE":
            parts.append(arg)
        elif name == "CATEGORY":
            parts.extend(_category(str(arg), flags))
        else:  # pragma: no cover - re's parser emits nothing else inside [...]
            raise UnsupportedFeatureError(f"character class item {name}", feature=name.lower())
    ranges = _fold(_normalise(parts), flags)
    return _complement(ranges) if negate else ranges


def _shown(pattern: str, limit: int = 120) -> str:
    """The pattern for an error message: long ones (a 20k-value enum) are cut, with their length."""
    if len(pattern) <= limit:
        return repr(pattern)
    return f"{pattern[:limit]!r}... ({len(pattern):,} characters)"


class _Budget:
    def __init__(self, pattern: str, *, max_nfa_states: int, max_dfa_states: int, time_budget_s: float) -> None:
        self.pattern = pattern
        self.shown = _shown(pattern)
        self.max_nfa_states = max_nfa_states
        self.max_dfa_states = max_dfa_states
        self.deadline = time.monotonic() + time_budget_s
        self.time_budget_s = time_budget_s

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise GrammarError(
                f"compiling regex {self.shown} exceeded the {self.time_budget_s:g} s budget "
                "(its automaton grows too large; simplify it or raise `time_budget_s`)"
            )


class _NFA:
    """Thompson NFA over code points: range edges and epsilon edges, node 0.. in creation order."""

    def __init__(self, budget: _Budget) -> None:
        self.edges: list[list[tuple[Ranges, int]]] = []
        self.eps: list[list[int]] = []
        self.budget = budget

    def node(self) -> int:
        if len(self.edges) >= self.budget.max_nfa_states:
            raise GrammarError(
                f"regex {self.budget.shown} needs more than {self.budget.max_nfa_states} automaton "
                "states (large counted repetitions?); simplify it or raise `max_nfa_states`"
            )
        self.edges.append([])
        self.eps.append([])
        return len(self.edges) - 1

    def chars(self, ranges: Ranges) -> tuple[int, int]:
        s, e = self.node(), self.node()
        if ranges:
            self.edges[s].append((ranges, e))
        return s, e

    def build(self, items, flags: int) -> tuple[int, int]:
        start = end = self.node()
        for op, arg in items:
            s, e = self._item(str(op), arg, flags)
            self.eps[end].append(s)
            end = e
        return start, end

    def _item(self, name: str, arg, flags: int) -> tuple[int, int]:
        if name == "LITERAL":
            return self.chars(_fold(((arg, arg),), flags))
        if name == "NOT_LITERAL":
            return self.chars(_complement(_fold(((arg, arg),), flags)))
        if name == "ANY":
            everything = ((0, MAX_UNICODE),)
            return self.chars(everything if flags & C.SRE_FLAG_DOTALL else _complement(((10, 10),)))
        if name == "IN":
            return self.chars(_class(arg, flags))
        if name == "SUBPATTERN":
            _group, add_flags, del_flags, sub = arg
            return self.build(sub, (flags | add_flags) & ~del_flags)
        if name == "BRANCH":
            s, e = self.node(), self.node()
            for alt in arg[1]:
                a_s, a_e = self.build(alt, flags)
                self.eps[s].append(a_s)
                self.eps[a_e].append(e)
            return s, e
        if name in ("MAX_REPEAT", "MIN_REPEAT"):  # lazy or greedy: the same language
            return self._repeat(*arg, flags)
        raise UnsupportedFeatureError(
            f"regex {self.budget.shown} uses a {_UNSUPPORTED.get(name, name)}, which a finite "
            "automaton cannot express; rewrite the pattern without it",
            feature=name.lower(),
            where=self.budget.pattern,
        )

    def _repeat(self, low: int, high: int, sub, flags: int) -> tuple[int, int]:
        start = cur = self.node()
        for _ in range(low):
            s, e = self.build(sub, flags)
            self.eps[cur].append(s)
            cur = e
        if high == C.MAXREPEAT:
            loop = self.node()
            self.eps[cur].append(loop)
            s, e = self.build(sub, flags)
            self.eps[loop].append(s)
            self.eps[e].append(loop)
            return start, loop
        end = self.node()
        self.eps[cur].append(end)
        for _ in range(high - low):
            s, e = self.build(sub, flags)
            self.eps[cur].append(s)
            self.eps[e].append(end)
            cur = e
        return start, end


def _byte_edges(nfa: _NFA) -> list[list[tuple[int, int, int]]]:
    """Code-point edges -> UTF-8 byte edges, via suffix chains shared by every source node."""
    edges: list[list[tuple[int, int, int]]] = [[] for _ in nfa.edges]
    chains: dict[tuple[int, tuple], int] = {}
    seqs: dict[Ranges, list] = {}

    def chain(target: int, suffix: tuple) -> int:
        if not suffix:
            return target
        node = chains.get((target, suffix))
        if node is None:
            nxt = chain(target, suffix[1:])
            node = len(edges)
            edges.append([(suffix[0][0], suffix[0][1], nxt)])
            chains[(target, suffix)] = node
        return node

    for src, out in enumerate(nfa.edges):
        for ranges, dst in out:
            if ranges not in seqs:
                seqs[ranges] = [seq for lo, hi in ranges for seq in utf8_sequences(lo, hi)]
            for seq in seqs[ranges]:
                edges[src].append((seq[0][0], seq[0][1], chain(dst, seq[1:])))
    return edges


def _top_alternatives(items) -> list[list]:
    """The pattern's top-level alternatives: a lone branch, or a lone flag-free group around one,
    is split (``(?:A|B)`` -> [A, B])."""
    items = list(items)
    if len(items) == 1:
        name, arg = str(items[0][0]), items[0][1]
        if name == "BRANCH":
            return [alt for sub in arg[1] for alt in _top_alternatives(sub)]
        if name == "SUBPATTERN" and not arg[1] and not arg[2]:
            return _top_alternatives(arg[3])
    return [items]


def _leading_lookaheads(alt: list) -> tuple[list, list]:
    """(bodies of the positive lookaheads an alternative starts with, the rest).

    Under full-match such a lookahead sees exactly the text the rest matches, so ``(?=A)R`` is
    L(R) intersected with the strings that start with a match of A: an automaton product."""
    heads = []
    while alt and str(alt[0][0]) in ("ASSERT", "ASSERT_NOT") and alt[0][1][0] == 1:
        heads.append((str(alt[0][0]) == "ASSERT", alt[0][1][1]))
        alt = alt[1:]
    return heads, alt


def check_supported(pattern: str) -> None:
    """Reject, before any automaton is built, what no finite automaton can express; with `re`'s own
    errors (message, position, caret) for invalid syntax."""
    if not isinstance(pattern, str):
        raise TypeError(f"`pattern` has to be a str, but is {type(pattern).__name__}")
    try:
        tree = sre_parse.parse(strip_anchors(pattern))
    except re.error as exc:
        caret = "" if exc.pos is None else f"\n  {pattern}\n  {' ' * exc.pos}^"
        raise GrammarError(f"invalid regex: {exc.msg} at position {exc.pos}{caret}") from exc
    for alt in _top_alternatives(tree):
        heads, rest = _leading_lookaheads(alt)
        for sub in [*(body for _positive, body in heads), rest]:
            _check_tree(pattern, sub)


def _check_tree(pattern: str, tree) -> None:
    for op, arg in tree:
        name = str(op)
        if name in _UNSUPPORTED:
            raise UnsupportedFeatureError(
                f"regex {_shown(pattern)} uses a {_UNSUPPORTED[name]}, which a finite automaton cannot "
                "express; rewrite the pattern without it",
                feature=name.lower(),
                where=pattern,
            )
        if name == "SUBPATTERN":
            _check_tree(pattern, arg[-1])
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            _check_tree(pattern, arg[2])
        elif name == "BRANCH":
            for alt in arg[1]:
                _check_tree(pattern, alt)


class _DFAMemo:
    """Automata already built in this process, by pattern: generated grammars (JSON Schema) share
    most terminals (strings, numbers, punctuation), so a server compiling one schema after another
    determinises each of those once. Bounded by bytes; failures are never kept."""

    def __init__(self, max_bytes: int, max_entry_bytes: int) -> None:
        self.data: dict[tuple, ByteDFA] = {}
        self.bytes = 0
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self.lock = threading.Lock()

    def get(self, key: tuple) -> ByteDFA | None:
        with self.lock:
            hit = self.data.pop(key, None)
            if hit is not None:
                self.data[key] = hit  # most recently used last
            return hit

    def put(self, key: tuple, dfa: ByteDFA) -> None:
        size = dfa.transitions.nbytes
        if size > self.max_entry_bytes:
            return
        with self.lock:
            if key in self.data:
                return
            while self.data and self.bytes + size > self.max_bytes:
                self.bytes -= self.data.pop(next(iter(self.data))).transitions.nbytes
            self.data[key] = dfa
            self.bytes += size

    def clear(self) -> None:
        with self.lock:
            self.data.clear()
            self.bytes = 0


_MEMO = _DFAMemo(max_bytes=64 << 20, max_entry_bytes=4 << 20)


_BUILDERS: dict[str, Callable[[int], ByteDFA]] = {}
_BUILDERS_LIMIT = 1024
_BUILDERS_LOCK = threading.Lock()


def register_builder(key: str, build: Callable[[int], ByteDFA]) -> None:
    """Have `compile_regex(key)` call `build(max_dfa_states)` instead of parsing the pattern: for
    generated patterns whose automaton their generator builds faster (the same language: the
    pattern stays the grammar's text, and without the registration it compiles the slow way).
    A key "lark:/.../" names the pattern as a lark grammar spells it (`registered_builder`).
    Remembered for the last 1024 keys of the process."""
    with _BUILDERS_LOCK:
        _BUILDERS.pop(key, None)
        _BUILDERS[key] = build
        while len(_BUILDERS) > _BUILDERS_LIMIT:
            _BUILDERS.pop(next(iter(_BUILDERS)))


def registered_builder(key: str) -> Callable[[int], ByteDFA] | None:
    return _BUILDERS.get(key)


def clear_regex_memo() -> None:
    """Forget the automata built so far (benchmarks timing cold compiles call this)."""
    _MEMO.clear()


def compile_regex(
    pattern: str,
    *,
    max_nfa_states: int = DEFAULT_MAX_NFA_STATES,
    max_dfa_states: int = DEFAULT_MAX_DFA_STATES,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
) -> ByteDFA:
    """The trimmed byte DFA of the strings that `re.fullmatch(pattern, s)` accepts.

    A leading `^`/`\\A` and a trailing `$`/`\\Z` are redundant under full-match and dropped before
    parsing. Lookaheads at the start of a top-level alternative (``(?=A)R|S``, ``(?!A)R``) are
    intersections (with a complement for the negative ones); any other anchor, lookaround or backreference is an `UnsupportedFeatureError`.
    The result is shared: never modify its arrays.
    """
    key = (pattern, max_nfa_states, max_dfa_states)
    dfa = _MEMO.get(key)
    if dfa is None:
        build = _BUILDERS.get(pattern)
        if build is not None:
            dfa = build(max_dfa_states)
        else:
            dfa = _compile_regex(pattern, max_nfa_states, max_dfa_states, time_budget_s)
        _MEMO.put(key, dfa)
    return dfa


def _compile_regex(pattern: str, max_nfa_states: int, max_dfa_states: int, time_budget_s: float) -> ByteDFA:
    budget = _Budget(pattern, max_nfa_states=max_nfa_states, max_dfa_states=max_dfa_states, time_budget_s=time_budget_s)
    tree = sre_parse.parse(strip_anchors(pattern))
    flags = tree.state.flags
    literal = _literal_run(tree, flags)  # one fixed string: most terminals of a JSON Schema grammar
    if literal and len(literal) < budget.max_dfa_states:
        return literal_dfa(literal)
    alts = [_leading_lookaheads(alt) for alt in _top_alternatives(tree)]
    if not any(heads for heads, _rest in alts):
        return _dfa(budget, tree, flags)
    products = [_product(budget, heads, rest, flags) for heads, rest in alts if heads]
    plain = [rest for heads, rest in alts if not heads]
    if not plain and len(products) == 1:
        return products[0]
    nfa = _NFA(budget)
    start, end = nfa.node(), nfa.node()
    for rest in plain:
        s, e = nfa.build(rest, flags)
        nfa.eps[start].append(s)
        nfa.eps[e].append(end)
    edges = _byte_edges(nfa)
    finals = {end}
    for dfa in products:  # each product DFA joins the byte NFA as nodes with byte-run edges
        if dfa.initial == dfa.dead:
            continue
        base = len(edges)
        for row in dfa.transitions[: dfa.n_states]:
            cuts = np.flatnonzero(np.diff(row)) + 1
            runs = zip(np.r_[0, cuts], np.r_[cuts, 256], strict=True)
            edges.append([(int(lo), int(hi) - 1, base + int(row[lo])) for lo, hi in runs if row[lo] != dfa.dead])
        nfa.eps[start].append(base + dfa.initial)
        finals.update(base + int(q) for q in np.flatnonzero(dfa.accepting))
    return determinise(edges, start, finals, eps=nfa.eps, max_states=budget.max_dfa_states, check_time=budget.check_time)


def literal_dfa(data: bytes) -> ByteDFA:
    """The chain automaton of one byte string (already trimmed and minimal)."""
    n = len(data)
    transitions = np.full((n + 2, 256), n + 1, dtype=np.int32)
    transitions[np.arange(n), np.frombuffer(data, dtype=np.uint8)] = np.arange(1, n + 1, dtype=np.int32)
    accepting = np.zeros(n + 1, dtype=bool)
    accepting[n] = True
    return ByteDFA(transitions=transitions, accepting=accepting, initial=0)


def _product(budget: _Budget, heads: list, rest: list, flags: int) -> ByteDFA:
    """``(?=A)(?!B)R`` under full match: R's DFA times, per lookahead, the DFA of A followed by
    anything (for ``(?!B)``: its complement)."""
    dfa = _dfa(budget, rest, flags)
    for positive, head in heads:
        ahead = _dfa(budget, head, flags, prefix=True, minimise=False)
        if not positive:
            ahead = complement(ahead)
        dfa = intersect(dfa, ahead, max_states=budget.max_dfa_states, check_time=budget.check_time)
    return dfa


def _literal_run(items, flags: int) -> bytes | None:
    """UTF-8 of a run of literal characters (None if any item is something else)."""
    out = []
    for op, arg in items:
        if op is not C.LITERAL or flags & C.SRE_FLAG_IGNORECASE or 0xD800 <= arg <= 0xDFFF:
            return None
        out.append(chr(arg))
    return "".join(out).encode("utf-8")


def _counted_dfa(budget: _Budget, items, flags: int) -> ByteDFA | None:
    """`P U{lo,hi} S` (P, S literal, U's strings a prefix code, no string of U starting with S's
    first byte) built directly from hi + 1 copies of U's minimal DFA, without unrolling hi
    copies of U's NFA (JSON Schema's length-bounded strings: 21 states per counted character,
    whose subset construction and minimisation took seconds for a few hundred). Trimmed and
    deterministic; minimal for the JSON string shapes (tests compare with the general route).
    None when `items` has another shape or counts fewer than _COUNTED_DIRECT repeats."""
    reps = [j for j, (op, _arg) in enumerate(items) if op in (C.MAX_REPEAT, C.MIN_REPEAT)]
    if len(reps) != 1:
        return None
    j = reps[0]
    lo, hi, sub = items[j][1]
    head, tail = _literal_run(items[:j], flags), _literal_run(items[j + 1 :], flags)
    unbounded = hi == C.MAXREPEAT
    if head is None or tail is None or (lo if unbounded else hi) < _COUNTED_DIRECT or (not unbounded and hi < lo):
        return None
    unit = _dfa(budget, sub, flags)
    ut, uacc, uinit, udead = unit.transitions, unit.accepting, unit.initial, unit.dead
    if uinit == udead or uacc[uinit]:
        return None
    acc_states = np.flatnonzero(uacc)
    if (ut[acc_states] != udead).any():  # an accepted unit goes on: not a prefix code
        return None
    if tail and ut[uinit, tail[0]] != udead:
        return None
    inner = [uinit] + [q for q in range(unit.n_states) if not uacc[q] and q != uinit]
    m = len(inner)
    base = len(head)  # block i (i units read) starts at base + i * m
    # blocks 0..last - 1, then the start state of block `last` alone; when unbounded, that state
    # reads like the one before it (its units, finished, come back to it)
    last = lo if unbounded else hi
    ends = [lo] if unbounded else list(range(lo, hi + 1))
    n = base + last * m + 1 + len(tail)
    if n > budget.max_dfa_states:
        raise GrammarError(
            f"regex {budget.shown} needs more than {budget.max_dfa_states} automaton states (large "
            "counted repetitions?); simplify it or raise `max_dfa_states`"
        )
    budget.check_time()
    dead = n
    trans = np.full((n + 1, 256), dead, dtype=np.int32)
    for k, b in enumerate(head):
        trans[k, b] = k + 1
    local = np.zeros(unit.n_states + 1, dtype=np.int64)
    local[inner] = np.arange(m)
    targets = ut[inner].astype(np.int64)  # [m, 256] in the unit's DFA
    done = np.append(uacc, False)[targets]  # a unit ends on this byte
    gone = targets == udead
    for i in range(last):
        rows = np.where(gone, dead, np.where(done, base + (i + 1) * m, base + i * m + local[targets]))
        trans[base + i * m : base + (i + 1) * m] = rows
    if unbounded:
        trans[base + last * m] = trans[base + (last - 1) * m]
    starts = [base + i * m for i in ends]
    accepting = np.zeros(n, dtype=bool)
    if tail:
        first = n - len(tail)  # the state after the tail's first byte
        for st in starts:
            trans[st, tail[0]] = first
        for k, b in enumerate(tail[1:]):
            trans[first + k, b] = first + k + 1
        accepting[n - 1] = True
    else:
        accepting[starts] = True
    return ByteDFA(transitions=trans, accepting=accepting, initial=0)


def _dfa(budget: _Budget, items, flags: int, *, prefix: bool = False, minimise: bool = True) -> ByteDFA:
    """The DFA of `items` (with `prefix`: of every string that starts with a match of them)."""
    if not prefix:
        fast = _counted_dfa(budget, list(items), flags)
        if fast is not None:
            return fast
    nfa = _NFA(budget)
    start, end = nfa.build(items, flags)
    if prefix:
        loop = nfa.node()
        nfa.eps[end].append(loop)
        s, e = nfa.chars(((0, MAX_UNICODE),))
        nfa.eps[loop].append(s)
        nfa.eps[e].append(loop)
        end = loop
    return determinise(
        _byte_edges(nfa), start, {end}, eps=nfa.eps, max_states=budget.max_dfa_states,
        check_time=budget.check_time, minimise=minimise,
    )


def strip_anchors(pattern: str) -> str:
    """Drop a leading `^`/`\\A` and an unescaped trailing `$`/`\\Z` (no-ops under full-match)."""
    if pattern.startswith("^"):
        pattern = pattern[1:]
    elif pattern.startswith("\\A"):
        pattern = pattern[2:]
    for anchor in ("$", "\\Z"):
        if pattern.endswith(anchor):
            body = pattern[: -len(anchor)]
            trailing = len(body) - len(body.rstrip("\\"))
            if trailing % 2 == 0:
                return body
    return pattern
