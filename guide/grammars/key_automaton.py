"""The byte automaton of JSON object keys other than a listed set, built straight from the trie of
names.

An object with listed properties and `additionalProperties` needs a terminal for "any key but
these". As a regex it is an alternation along the trie of names whose every step also offers
"any other character"; parsing it, the subset construction and minimisation took 7-20 ms for a
typical schema, the largest part of its time to first mask. Here each trie node becomes a row
copied from a prebuilt "free string" row, with a few bytes overridden: the bytes that continue a
listed name. The language is exactly that of `json_schema._key_excluding`'s regex (a test
compares the two), so the lark text keeps the regex and `re_compile` builds this instead.

Two spellings, as in `_key_excluding`:
- exact: a key is excluded when it *decodes* to a listed name, however it is spelled (raw,
  short escape, \\u escape in either case); names must be BMP characters, not surrogates;
- raw: along the trie only the canonical spelling (JSON's own, escaped where JSON requires)
  continues a name, and a key leaves the trie only by a raw character.
After leaving the trie any JSON string content follows.
"""

from __future__ import annotations

import numpy as np

from ..errors import GrammarError
from .bytedfa import ByteDFA
from .json_schema import json_body

_QUOTE, _BACKSLASH = 0x22, 0x5C
_SHORT = {0x22: '"', 0x5C: "\\", 0x2F: "/", 8: "b", 12: "f", 10: "n", 13: "r", 9: "t"}  # code point -> letter
_HEX = b"0123456789abcdef"

# The free tail (a JSON string's content after the key left the trie, then the closing quote) is
# the same automaton for every key set: fixed state numbers, rows built once.
_FREE, _C1, _C2, _C3, _E0, _ED, _F0, _F4, _ESC, _U4, _U3, _U2, _U1, _FINAL, _START = range(15)
_TAIL = 15  # first state number of the trie part
_LEAD_STATE = {**{b: _C1 for b in range(0xC2, 0xE0)}, 0xE0: _E0, **{b: _C2 for b in range(0xE1, 0xF0)},
               0xED: _ED, 0xF0: _F0, **{b: _C3 for b in range(0xF1, 0xF4)}, 0xF4: _F4}


def _tail_rows(dead: int) -> np.ndarray:
    rows = np.full((_TAIL, 256), dead, dtype=np.int32)
    free = rows[_FREE]
    free[0x20:0x80] = _FREE
    free[_QUOTE] = _FINAL
    free[_BACKSLASH] = _ESC
    for lead, state in _LEAD_STATE.items():
        free[lead] = state
    rows[_C1, 0x80:0xC0] = _FREE
    rows[_C2, 0x80:0xC0] = _C1
    rows[_C3, 0x80:0xC0] = _C2
    rows[_E0, 0xA0:0xC0] = _C1
    rows[_ED, 0x80:0xA0] = _C1  # no surrogates in UTF-8
    rows[_F0, 0x90:0xC0] = _C2
    rows[_F4, 0x80:0x90] = _C2
    for letter in b'"\\/bfnrt':
        rows[_ESC, letter] = _FREE
    rows[_ESC, ord("u")] = _U4
    for state, nxt in ((_U4, _U3), (_U3, _U2), (_U2, _U1), (_U1, _FREE)):
        for d in b"0123456789abcdefABCDEF":
            rows[state, d] = nxt
    rows[_START, _QUOTE] = -1  # filled with the trie's root
    return rows


def _generic(prefix: bytes, exact: bool) -> int | None:
    """The free-tail state a key is in after leaving the trie inside the unit spelled `prefix`
    (a proper prefix of a unit); None where that spelling cannot leave the trie (raw keys leave
    by a raw character only)."""
    if not prefix:
        return _FREE
    if prefix[0] == _BACKSLASH:
        if not exact:
            return None
        if len(prefix) == 1:
            return _ESC
        return (_U4, _U3, _U2, _U1)[len(prefix) - 2]
    lead = prefix[0]
    if len(prefix) == 1:
        return _LEAD_STATE[lead]
    width = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
    return (_C1, _C2, _C3)[width - len(prefix) - 1]


def _spellings(ch: str, exact: bool) -> list[bytes]:
    """The byte spellings of `ch` that continue a name (hex digits in lowercase: both cases of a
    \\u escape's letters are added where rows are filled)."""
    if not exact:
        return [json_body(ch).encode()]
    cp = ord(ch)
    out = [f"\\u{cp:04x}".encode()]
    if cp in _SHORT:
        out.append(b"\\" + _SHORT[cp].encode())
    if cp >= 0x20 and cp not in (_QUOTE, _BACKSLASH):
        out.append(ch.encode())
    return out


def excluded_keys_dfa(listed: set[str], *, exact: bool, max_states: int) -> ByteDFA:
    """Quoted JSON strings other than the listed keys (see the module docstring); not minimised
    (trie nodes with alike futures stay apart), every state live."""
    if exact and any(ord(ch) > 0xFFFF or 0xD800 <= ord(ch) <= 0xDFFF for k in listed for ch in k):
        raise ValueError("exact key automata need BMP, non-surrogate names")
    trie: dict = {}
    for k in sorted(listed):
        node = trie
        for ch in k:
            node = node.setdefault(ch, {})
        node[None] = {}
    # States past the tail: one per trie node, and one per proper prefix of its children's
    # spellings, trie node after trie node (breadth-first). A row's entry is a state number, -2
    # (dead) or -3 - i (trie node i, whose state number is known once it is reached).
    rows: list[np.ndarray] = []
    tail = _tail_rows(-2)  # -2: dead, renumbered at the end
    state_of: dict[int, int] = {}
    nodes = [trie]
    index_of = {id(trie): 0}
    i = 0
    while i < len(nodes):
        node = nodes[i]
        i += 1
        # the spelling trie of this node's children: prefix -> {next byte: target}
        steps: dict[bytes, dict[int, object]] = {}
        for ch, child in node.items():
            spellings = [] if ch is None else _spellings(ch, exact)
            if not spellings:  # the end mark, or a name no byte string spells
                continue
            if id(child) not in index_of:
                index_of[id(child)] = len(nodes)
                nodes.append(child)
            for sp in spellings:
                for j in range(len(sp)):
                    steps.setdefault(sp[:j], {})[sp[j]] = child if j == len(sp) - 1 else sp[: j + 1]
        prefixes = [b""] + sorted((p for p in steps if p), key=lambda p: (len(p), p))
        local = {p: None for p in prefixes}
        for p in prefixes:
            local[p] = len(rows) + _TAIL
            g = _generic(p, exact)
            row = tail[g].copy() if g is not None else np.full(256, -2, dtype=np.int32)
            if not p:
                row[_QUOTE] = -2 if None in node else _FINAL
                if not exact:  # a raw key leaves by a raw character, never by an escape
                    row[_BACKSLASH] = -2
            rows.append(row)
        for p in prefixes:
            row = rows[local[p] - _TAIL]
            hexy = exact and p[:2] == b"\\u"
            for byte, target in steps.get(p, {}).items():
                if isinstance(target, dict):
                    row[byte] = -3 - index_of[id(target)]  # a trie node: resolved below
                else:
                    row[byte] = local[target]
                if hexy and chr(byte) in "abcdef":
                    row[ord(chr(byte).upper())] = row[byte]
        state_of[id(node)] = local[b""]
        if len(rows) + _TAIL > max_states:
            raise GrammarError(
                f"the key automaton of {len(listed)} names exceeds {max_states} states; "
                "simplify the schema or raise `max_dfa_states`"
            )
    table = np.concatenate([tail, np.array(rows, dtype=np.int32).reshape(-1, 256)])
    node_state = np.array([state_of[id(nd)] for nd in nodes], dtype=np.int64)
    trie_ref = table <= -3
    table[trie_ref] = node_state[-3 - table[trie_ref]]
    table[_START, _QUOTE] = state_of[id(trie)]
    n = table.shape[0]
    table[table == -2] = n
    transitions = np.full((n + 1, 256), n, dtype=np.int32)
    transitions[:n] = table
    accepting = np.zeros(n, dtype=bool)
    accepting[_FINAL] = True
    return ByteDFA(transitions=transitions, accepting=accepting, initial=_START)
