"""Byte-level DFAs: the automaton every text constraint runs on.

Tokens are byte strings that may end in the middle of a UTF-8 character, so constraints run
over bytes: each character transition becomes the UTF-8 byte-range sequences of its character
set (`utf8_sequences`), the result is determinised (two characters can share a lead byte),
trimmed so that every live state can still reach an accepting one, and minimised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import GrammarError

MAX_UNICODE = 0x10FFFF
_SURROGATES = (0xD800, 0xDFFF)
_LENGTH_LIMITS = (0x7F, 0x7FF, 0xFFFF, MAX_UNICODE)

ByteRange = tuple[int, int]
ByteSeq = tuple[ByteRange, ...]


@dataclass(frozen=True, eq=False)
class ByteDFA:
    """A trimmed byte DFA; state `dead` (== number of live states) is the absorbing reject state."""

    transitions: np.ndarray  # int32 [n_states + 1, 256]
    accepting: np.ndarray  # bool [n_states]
    initial: int

    @property
    def n_states(self) -> int:
        return int(self.accepting.shape[0])

    @property
    def dead(self) -> int:
        return self.n_states

    def walk(self, data: bytes, state: int | None = None) -> int:
        q = self.initial if state is None else state
        for b in data:
            q = int(self.transitions[q, b])
            if q == self.dead:
                break
        return q

    def matches(self, data: bytes) -> bool:
        q = self.walk(data)
        return q != self.dead and bool(self.accepting[q])


def intersects(a: ByteDFA, b: ByteDFA) -> bool:
    """Whether some byte string is accepted by both (a search over reachable state pairs)."""
    if a.initial == a.dead or b.initial == b.dead:
        return False
    start = (a.initial, b.initial)
    seen = {start}
    stack = [start]
    while stack:
        p, q = stack.pop()
        if a.accepting[p] and b.accepting[q]:
            return True
        ta, tb = a.transitions[p], b.transitions[q]
        both = (ta != a.dead) & (tb != b.dead)
        for pair in set(zip(ta[both].tolist(), tb[both].tolist(), strict=True)):
            if pair not in seen:
                seen.add(pair)
                stack.append(pair)
    return False


def complement(a: ByteDFA) -> ByteDFA:
    """Every byte string `a` rejects: the dead state becomes an accepting sink (not trimmed; only
    meant as an operand of `intersect`, whose other side keeps the result to valid text)."""
    n = a.n_states
    table = np.empty((n + 2, 256), dtype=np.int32)
    table[: n + 1] = a.transitions  # moves into the old dead state n now reach the sink
    table[n] = n
    table[n + 1] = n + 1
    return ByteDFA(transitions=table, accepting=np.append(~a.accepting, True), initial=a.initial)


def intersect(a: ByteDFA, b: ByteDFA, *, max_states: int, check_time: Callable[[], None] | None = None) -> ByteDFA:
    """The product automaton of the strings both accept (for a pattern's leading lookahead)."""
    width = b.dead + 1
    ids: dict[int, int] = {a.initial * width + b.initial: 0}
    order = [(a.initial, b.initial)]
    rows: list[np.ndarray] = []
    i = 0
    while i < len(order):
        if check_time is not None and i % 64 == 0:
            check_time()
        p, q = order[i]
        ta = a.transitions[p].astype(np.int64)
        tb = b.transitions[q].astype(np.int64)
        live = (ta != a.dead) & (tb != b.dead)
        row = np.full(256, -1, dtype=np.int64)
        if live.any():
            keys, inverse = np.unique(ta[live] * width + tb[live], return_inverse=True)
            targets = []
            for key in keys.tolist():
                sid = ids.get(key)
                if sid is None:
                    sid = ids[key] = len(order)
                    order.append(divmod(key, width))
                    if len(order) > max_states:
                        raise GrammarError(
                            f"the intersection automaton exceeds {max_states} states; simplify the "
                            "pattern (e.g. smaller counted repetitions) or raise `max_dfa_states`"
                        )
                targets.append(sid)
            row[live] = np.asarray(targets, dtype=np.int64)[np.asarray(inverse).reshape(-1)]
        rows.append(row)
        i += 1
    accepting = np.array(
        [p != a.dead and q != b.dead and bool(a.accepting[p] and b.accepting[q]) for p, q in order], dtype=bool
    )
    return _trim(np.stack(rows), accepting, check_time)


def utf8_sequences(lo: int, hi: int) -> list[ByteSeq]:
    """Byte-range sequences whose cross products are exactly the UTF-8 encodings of [lo, hi].

    Surrogates are skipped: they have no UTF-8 encoding.
    """
    out: list[ByteSeq] = []
    for a, b in _exclude_surrogates(lo, hi):
        start = a
        for limit in _LENGTH_LIMITS:
            if start > b:
                break
            if start <= limit:
                end = min(b, limit)
                _split_aligned(start, end, out)
                start = end + 1
    return out


def _exclude_surrogates(lo: int, hi: int) -> Iterable[tuple[int, int]]:
    s_lo, s_hi = _SURROGATES
    if hi < s_lo or lo > s_hi:
        return [(lo, hi)]
    parts = []
    if lo < s_lo:
        parts.append((lo, s_lo - 1))
    if hi > s_hi:
        parts.append((s_hi + 1, hi))
    return parts


def _split_aligned(lo: int, hi: int, out: list[ByteSeq]) -> None:
    """Split a same-length range until every continuation byte spans a full or a single block."""
    n = len(chr(lo).encode("utf-8"))
    for i in range(1, n):
        m = (1 << (6 * i)) - 1
        if (lo & ~m) != (hi & ~m):
            if lo & m:
                _split_aligned(lo, lo | m, out)
                _split_aligned((lo | m) + 1, hi, out)
                return
            if (hi & m) != m:
                _split_aligned(lo, (hi & ~m) - 1, out)
                _split_aligned(hi & ~m, hi, out)
                return
    a, b = chr(lo).encode("utf-8"), chr(hi).encode("utf-8")
    out.append(tuple(zip(a, b, strict=True)))


def determinise(
    edges: list[list[tuple[int, int, int]]],
    initial: int,
    finals: set[int],
    *,
    eps: list[list[int]] | None = None,
    max_states: int,
    check_time: Callable[[], None] | None = None,
    minimise: bool = True,
) -> ByteDFA:
    """Subset construction over byte-range edges (plus optional epsilon edges), then trimming
    (and minimising, unless the DFA is only an operand of a product that is minimised anyway).

    `eps[i]` may be shorter than `edges` (nodes past it have no epsilon edges).
    """
    eps = eps or []

    def closure(nodes: Iterable[int]) -> frozenset[int]:
        seen = set(nodes)
        stack = list(seen)
        while stack:
            node = stack.pop()
            if node < len(eps):
                for nxt in eps[node]:
                    if nxt not in seen:
                        seen.add(nxt)
                        stack.append(nxt)
        return frozenset(seen)

    start = closure((initial,))
    ids: dict[frozenset[int], int] = {start: 0}
    order = [start]
    rows: list[list[int]] = []
    i = 0
    while i < len(order):
        if check_time is not None and i % 64 == 0:
            check_time()
        # sweep over the range ends: one target set per run of bytes, not per byte
        events: list[tuple[int, int, int]] = []
        for node in order[i]:
            for lo, hi, dst in edges[node]:
                events.append((lo, 1, dst))
                events.append((hi + 1, -1, dst))
        events.sort()
        active: dict[int, int] = {}
        runs: list[tuple[int, frozenset[int]]] = []
        for k, (pos, delta, dst) in enumerate(events):
            count = active.get(dst, 0) + delta
            if count:
                active[dst] = count
            else:
                del active[dst]
            if k + 1 == len(events) or events[k + 1][0] != pos:
                runs.append((pos, frozenset(active)))
        row = [-1] * 256
        memo: dict[frozenset[int], int] = {}
        for k, (pos, raw) in enumerate(runs[:-1]):
            if not raw:
                continue
            sid = memo.get(raw)
            if sid is None:
                key = closure(raw) if eps else raw
                sid = ids.get(key)
                if sid is None:
                    sid = ids[key] = len(order)
                    order.append(key)
                    if len(order) > max_states:
                        raise GrammarError(
                            f"the byte automaton exceeds {max_states} states; simplify the pattern "
                            "(e.g. smaller counted repetitions) or raise `max_dfa_states`"
                        )
                memo[raw] = sid
            end = runs[k + 1][0]
            row[pos:end] = [sid] * (end - pos)
        rows.append(row)
        i += 1
    accepting = np.array([bool(s & finals) for s in order], dtype=bool)
    return _trim(np.array(rows, dtype=np.int64), accepting, check_time, minimise)


def unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(rows, axis=0, return_inverse=True) up to the order of the unique rows, through a
    1-D hash of each row: many times faster for wide rows (the axis=0 form sorts them as raw
    bytes). Exact: a hash collision is detected and falls back to the slow way."""
    mix = _mix(rows.shape[1])
    _, first, inverse = np.unique(rows.astype(np.int64, copy=False) @ mix, return_index=True, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    uniq = rows[first]
    if not np.array_equal(uniq[inverse], rows):
        uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
        inverse = np.asarray(inverse).reshape(-1)
    return uniq, inverse


def _distinct_columns(table: np.ndarray) -> np.ndarray:
    """One byte of each group of bytes whose transition columns are equal (all bytes when a hash
    collision would merge two different columns)."""
    h = np.ascontiguousarray(table.T).astype(np.int64, copy=False) @ _mix(table.shape[0])
    _, first, inv = np.unique(h, return_index=True, return_inverse=True)
    if not np.array_equal(table[:, first[np.asarray(inv).reshape(-1)]], table):
        return np.arange(table.shape[1])
    return np.sort(first)


_MIXES: dict[int, np.ndarray] = {}


def _mix(width: int) -> np.ndarray:
    mix = _MIXES.get(width)
    if mix is None:
        mix = _MIXES[width] = np.random.default_rng(width).integers(1, 2**62, size=width, dtype=np.int64) | 1
    return mix


def _trim(
    rows: np.ndarray, accepting: np.ndarray, check_time: Callable[[], None] | None = None, minimise: bool = True
) -> ByteDFA:
    """Keep the states that are reachable (they all are) and co-reachable; map the rest to `dead`."""
    n = rows.shape[0]
    # co-reachable states: a backward search over the distinct (target, source) edges (a long
    # counted repeat is a deep chain; one full-table pass per level would be quadratic)
    src = np.nonzero(rows >= 0)[0]
    pairs = np.unique(rows[rows >= 0].astype(np.int64) * n + src)
    pred_of, pred = pairs // n, pairs % n
    starts = np.searchsorted(pred_of, np.arange(n + 1))
    live = accepting.copy()
    frontier = np.flatnonzero(live)
    while frontier.size:
        lo, cnt = starts[frontier], starts[frontier + 1] - starts[frontier]
        total = int(cnt.sum())
        if not total:
            break
        idx = np.repeat(lo - np.cumsum(cnt) + cnt, cnt) + np.arange(total)
        found = pred[idx]
        frontier = np.unique(found[~live[found]])
        live[frontier] = True
    new_id = np.full(n, -1, dtype=np.int64)
    new_id[live] = np.arange(int(live.sum()))
    n_live = int(live.sum())
    dead = n_live
    table = np.full((n_live + 1, 256), dead, dtype=np.int32)
    kept = rows[live]
    mapped = np.where(kept >= 0, new_id[np.where(kept >= 0, kept, 0)], -1)
    table[:n_live] = np.where(mapped >= 0, mapped, dead)
    initial = int(new_id[0]) if live[0] else dead
    if not minimise:
        return ByteDFA(transitions=table, accepting=accepting[live], initial=initial)
    return _minimise(table, accepting[live], initial, check_time)


def _minimise(
    table: np.ndarray, accepting: np.ndarray, initial: int, check_time: Callable[[], None] | None = None
) -> ByteDFA:
    """Moore partition refinement, vectorised: states with equal futures merge.

    UTF-8 expansion of large Unicode classes leaves many equivalent states; every state left
    costs one vectorised walk of the vocabulary at compile time, so this pays for itself.
    """
    n = accepting.shape[0]
    if n == 0:
        return ByteDFA(transitions=table, accepting=accepting, initial=initial)
    _, classes = np.unique(accepting, return_inverse=True)  # 0-based class ids
    classes = classes.reshape(-1).astype(np.int64)
    n_classes = int(classes.max()) + 1
    narrow = table[:n][:, _distinct_columns(table[:n])]  # bytes no state tells apart: one column
    while True:
        ext = np.append(classes, -1)  # the dead state is its own class
        if check_time is not None:
            check_time()
        signature = np.concatenate([classes[:, None], ext[narrow]], axis=1)
        _, refined = unique_rows(signature)
        count = int(refined.max()) + 1
        if count == n_classes:
            break
        classes, n_classes = refined, count
    # number the classes in order of first appearance, so the initial state's class comes first
    _, first = np.unique(classes, return_index=True)
    order = np.argsort(first)
    renumber = np.empty_like(order)
    renumber[order] = np.arange(len(order))
    classes = renumber[classes]
    reps = first[order]
    dead = n_classes
    ext = np.append(classes, dead)
    new_table = np.full((n_classes + 1, 256), dead, dtype=np.int32)
    new_table[:n_classes] = ext[table[reps]]
    return ByteDFA(transitions=new_table, accepting=accepting[reps], initial=int(classes[initial]) if initial < n else dead)
