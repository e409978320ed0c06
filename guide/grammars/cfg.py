r"""Context-free grammar constraints: `guide.grammars.cfg.grammar(lark_text)` and `builtin(name)`.

The generated text is exactly a string that
``lark.Lark(text, parser="lalr", lexer="contextual", start=start).parse`` accepts.

Pieces:
- lark itself parses the grammar text, resolves ``%import``/templates and builds the LALR(1)
  table (so errors and conflicts are lark's own, wrapped in `GrammarError`);
- every terminal becomes a byte DFA (`regex.py` / `bytedfa.py`), and all of them are run in
  parallel as one product automaton (`_Lexer`) whose states know which terminals are still
  alive and which accept;
- a small immutable stack machine over lark's parse table (a stack is a tuple of LALR states,
  so fork and rollback are copies of tuples);
- lexing is contextual like lark's: the terminals considered at a lexeme are those the LALR
  state has an action for (plus the ``%ignore``d ones); a lexeme extends while one of them can
  still match (longest match), and when it can no longer extend it ends with the best terminal
  it accepts (higher priority first; at equal priority a string literal beats a regex, as lark's
  "unless" rule does).

Masks: for a lexer state ``q`` and the set ``A`` of terminals in play, all tokens of the
vocabulary are walked once through the restricted automaton (vectorised, as `token_index.py`,
over "units": tokens rewritten as sequences of byte classes the lexer cannot tell apart and
deduplicated, 429 units instead of 49,135 tokens for the arithmetic grammar; a walk of the whole
vocabulary steps the trie of units level by level, each distinct prefix once, and only the
prefixes still inside the lexeme: units are numbered depth-first, so a prefix that ends the
lexeme settles its whole range of units at once); lexer states that agree under ``A`` (their
terminals' own automaton states, for the terminals of ``A``) share one walk; tokens that stay
inside the lexeme form one bitmask (kept when the lexeme can still become a terminal the parser
takes); an ``%ignore``d lexeme boundary restarts lexing inside the same walk; tokens that cross
another boundary are grouped by the terminal that ends it and their remainders form a smaller
set walked from the start of the next lexeme, under the accept set of the parser state reached
after that terminal. Walks are precomputed at compile time (within a time budget, the rest on
first use); parser-dependent results (feeds, accept sets, masks) are cached by the top of the
parser stack they actually read, so stacks that agree there share them. A mask then costs a
few dict look-ups and bitmask ORs.

Layout (indentation languages, `Layout`): lark's route for INDENT/DEDENT is a postlexer and
``%declare``d terminals, which guide does not run (they are rejected). builtin("python") keeps
the indentation in the grammar instead (level-indexed block rules and newline terminals, see
builtin/python.lark), and `Layout` changes only which terminals the lexer considers in a parser
state: reserved keywords, newlines ignored only inside brackets (found by scanning the stack
down to the current line's start, so caches still key on a short stack suffix), no leading
spaces, and line comments only where a line may end. A Layout grammar is lexed by guide only:
`Grammar.parses` then runs our lexer and parser over single bytes.

Known differences from lark: lark's lexer tries terminals in priority order and takes the first
regex alternative that matches, where this lexer takes the longest match and uses priorities
only to break ties, so grammars whose terminals overlap with *different* priorities may lex
differently; regex classes ``\d``, ``\w``, ``\s`` are ASCII-only here (lark's are Unicode).
"""

from __future__ import annotations

import atexit
import gc
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

from ..bitmask import bitmask_width, bits_from_ids
from ..constraint import Compiled, Constraint, Matcher
from ..errors import EmptyLanguageError, GrammarError, UnsupportedFeatureError
from .bytedfa import ByteDFA, unique_rows
from .re_compile import DEFAULT_MAX_DFA_STATES, clear_regex_memo, registered_builder
from .regex import Regex
from .token_index import token_table

if TYPE_CHECKING:
    from ..vocab import Vocabulary

_MAX_LEXER_STATES = 20_000
_LEXER_CHUNK_CELLS = 1 << 21  # (state, byte, terminal) cells per frontier chunk of the lexer build (16 MiB)
# Bounds on the work one grammar can cause (docs/reliability.md): lark's LALR table build grows
# with the grammar, and the cost of one mask grows at worst with the parser stack.
MAX_GRAMMAR_BYTES = 4_000_000
MAX_RULES = 100_000
MAX_STACK_DEPTH = 10_000
COMPILE_BUDGET_S = 10.0  # from Grammar() to the lexer automaton built; lark's table build counts (it cannot be stopped, only bounded by size)
_MASK_CACHE_LIMIT = 4096
_CACHE_LIMIT = 200_000
# CPU seconds of vocabulary walks done ahead of use, in a background thread started once the
# first mask is ready: it overlaps the model's forward passes (torch releases the GIL) instead of
# delaying the first token.
_PRECOMPUTE_BUDGET_S = 0.25
_DENSE_KEYS = 1 << 21  # class-trie levels with fewer possible (parent, class) keys are deduplicated by marking
_END = "$END"
# Background walks stop when the interpreter exits: a daemon thread killed inside numpy's C++
# code during finalisation aborts the process ("terminate called without an active exception").
_EXITING = threading.Event()
_WALKERS: set[threading.Thread] = set()


@atexit.register
def _stop_background_walks() -> None:
    _EXITING.set()
    for t in list(_WALKERS):
        t.join(timeout=10)

# lark's common.lark terminals whose compiled regexes use lookaround, mapped to equivalent
# lookaround-free regexes (lark's `.` excludes "\n", so these do too).
_COMMON_TRANSLATIONS = {
    "ESCAPED_STRING": r'"(?:[^"\\\n]|\\[^\n])*"',
}


_LARK_BUILD_LOCK = threading.Lock()


def build_lark(text: str, **options):
    """`lark.Lark(text, **options)` without lark's terminal-collision report.

    When interegular happens to be installed, lark compares every pair of terminals while
    building a lexer, only to log warnings; on large generated grammars (JSON Schema) that took
    seconds to minutes. guide's own lexer decides collisions itself, so the report is skipped.
    """
    import lark
    import lark.lexer

    with _LARK_BUILD_LOCK:
        saved = lark.lexer.has_interegular
        lark.lexer.has_interegular = False
        collecting = gc.isenabled()
        gc.disable()  # lark allocates many small acyclic objects: cyclic collections only cost (~15% of the build)
        try:
            return lark.Lark(text, **options)
        finally:
            lark.lexer.has_interegular = saved
            if collecting:
                gc.enable()


def _lark_cache_path(text: str, options: dict) -> str:
    import hashlib

    import lark

    from ..cache import cache_dir

    folder = cache_dir() / "lark"
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(f"{lark.__version__}\0{sorted(map(str, options.items()))}\0{text}".encode()).hexdigest()
    return str(folder / f"{digest}.lark")


@lru_cache(maxsize=1)
def _known_lookaround_terminals() -> dict[str, str]:
    """lark's compiled regex for each common terminal in `_COMMON_TRANSLATIONS` -> our regex."""

    names = ", ".join(_COMMON_TRANSLATIONS)
    text = "start: " + " ".join(_COMMON_TRANSLATIONS) + f"\n%import common ({names})\n"
    parser = build_lark(text, parser="lalr")
    out = {}
    for term in parser.terminals:
        if term.name in _COMMON_TRANSLATIONS:
            out[term.pattern.to_regexp()] = _COMMON_TRANSLATIONS[term.name]
    return out


# ---------------------------------------------------------------------------------------------
# Grammar analysis (vocabulary-independent)


@dataclass(frozen=True, eq=False)
class _Lexer:
    """The product automaton of all terminal DFAs. State `dead` (== n) is absorbing."""

    names: tuple[str, ...]
    trans: np.ndarray  # int32 [n + 1, 256]
    alive: tuple[int, ...]  # per state (dead included): bitset of terminals that can still match
    accept: tuple[int, ...]  # per state (dead included): bitset of terminals that match here
    alive_mat: np.ndarray  # bool [n + 1, k]: `alive` as a matrix (vectorised walks)
    accept_mat: np.ndarray  # bool [n + 1, k]: `accept` as a matrix
    rank: tuple[int, ...]  # terminal indices, best first (priority, string over regex, lark order)
    ignored: int  # bitset of %ignore'd terminals
    comps: np.ndarray  # int16/int32 [n + 1, k]: each terminal's own (minimal) DFA state in every product state
    initial: int = 0

    @property
    def dead(self) -> int:
        return int(self.trans.shape[0]) - 1


def _terminal_regex(term) -> str:
    from lark.lexer import PatternStr

    if isinstance(term.pattern, PatternStr):
        return term.pattern.to_regexp()
    regexp = term.pattern.to_regexp()
    return _known_lookaround_terminals().get(regexp, regexp)


def _terminal_dfa(term) -> ByteDFA:
    """A terminal's automaton: built by its generator where one registered it for the terminal's
    source text (JSON Schema's excluded keys), else compiled from its regex."""
    raw = getattr(term.pattern, "raw", None)  # older lark: no source text
    build = registered_builder("lark:" + raw) if raw else None
    if build is not None:
        return build(DEFAULT_MAX_DFA_STATES)
    return Regex(_terminal_regex(term)).byte_dfa()


def _build_lexer(terminals: list, ignored: set[str], time_budget_s: float, deadline: float) -> _Lexer:
    from lark.lexer import PatternStr

    dfas = []
    for term in terminals:
        if time.monotonic() > deadline:
            raise GrammarError(
                f"compiling the {len(terminals)} terminals of the grammar exceeded the "
                f"{time_budget_s:g} s budget (at {term.name}); simplify it or raise time_budget_s"
            )
        try:
            dfa = _terminal_dfa(term)
        except UnsupportedFeatureError as exc:
            raise UnsupportedFeatureError(
                f"terminal {term.name} (/{term.pattern.value[:120]}/) cannot be compiled to an automaton: {exc}",
                feature=exc.feature,
                where=term.name,
            ) from exc
        except GrammarError as exc:
            raise GrammarError(f"terminal {term.name}: {exc}") from exc
        if dfa.initial == dfa.dead:
            raise EmptyLanguageError(f"terminal {term.name} matches no string")
        if dfa.accepting[dfa.initial]:
            raise GrammarError(f"terminal {term.name} matches the empty string")
        dfas.append(dfa)
    k = len(dfas)
    deads = np.array([d.dead for d in dfas], dtype=np.int64)
    tables = [d.transitions for d in dfas]
    accepting = [np.append(d.accepting, False) for d in dfas]
    # Breadth-first over product states, a chunk of the frontier at a time: the successors of
    # every (state, byte) of the chunk come from one fancy-index per terminal, and the distinct
    # successor tuples are found by hashing rows (unique_rows) rather than state by state.
    # The start state is never the target of a transition, even when every terminal DFA comes
    # back to its own start (it stands for "no byte of the lexeme yet"): it is not in `ids`.
    # Only the terminals still alive somewhere in a chunk are stepped (past the first byte of a
    # lexeme, few are): the others stay dead.
    ids: dict[bytes, int] = {}
    buf = np.empty((64, k), dtype=np.int64)
    buf[0] = [d.initial for d in dfas]
    n = 1
    rows: list[np.ndarray] = []
    width = k  # terminals alive in the last chunk: sizes the next one
    i = 0
    while i < n:
        if time.monotonic() > deadline:
            raise GrammarError(
                f"building the lexer automaton of {k} terminals exceeded the {time_budget_s:g} s "
                f"budget ({n} states so far); simplify the terminals"
            )
        cur = buf[i : min(n, i + max(1, _LEXER_CHUNK_CELLS // (256 * max(width, 1))))]
        m = cur.shape[0]
        cols = np.flatnonzero((cur != deads).any(axis=0))
        width = len(cols)
        nxt = np.empty((m, 256, width), dtype=np.int64)
        for j, t in enumerate(cols.tolist()):
            nxt[:, :, j] = tables[t][cur[:, t]]
        uniq, inverse = unique_rows(nxt.reshape(m * 256, width))
        _, first = np.unique(inverse, return_index=True)  # first (state, byte) reaching each row
        targets = np.full(len(uniq), -1, dtype=np.int64)
        live = ~(uniq == deads[cols]).all(axis=1)
        full = np.broadcast_to(deads, (len(uniq), k)).copy()
        full[:, cols] = uniq
        keys = full.astype(np.int32)
        for u in np.argsort(first, kind="stable").tolist():
            if not live[u]:
                continue
            key = keys[u].tobytes()
            sid = ids.get(key)
            if sid is None:
                sid = ids[key] = n
                if n >= buf.shape[0]:
                    buf = np.concatenate([buf, np.empty_like(buf)])
                buf[n] = full[u]
                n += 1
                if n > _MAX_LEXER_STATES:
                    raise GrammarError(f"the lexer automaton exceeds {_MAX_LEXER_STATES} states; simplify the terminals")
            targets[u] = sid
        rows.append(targets[inverse].reshape(m, 256))
        i += m
    trans = np.full((n + 1, 256), n, dtype=np.int32)
    table = np.concatenate(rows)
    trans[:n] = np.where(table < 0, n, table)
    states = buf[:n]
    comps = np.empty((n + 1, k), dtype=np.int16 if int(deads.max(initial=0)) < 2**15 else np.int32)
    comps[:n] = states
    comps[n] = deads
    alive_m = np.zeros((n + 1, k), dtype=bool)  # the last row: the dead state
    alive_m[:n] = states != deads
    accept_m = np.zeros_like(alive_m)
    for t in range(k):
        accept_m[:n, t] = accepting[t][states[:, t]]

    def bitsets(m: np.ndarray) -> tuple[int, ...]:
        packed = np.packbits(m, axis=1, bitorder="little")
        return tuple(int.from_bytes(r.tobytes(), "little") for r in packed)

    def rank_key(t: int):
        term = terminals[t]
        return (-term.priority, not isinstance(term.pattern, PatternStr), -term.pattern.max_width,
                -len(term.pattern.value), term.name)

    rank = tuple(sorted(range(k), key=rank_key))
    ign = 0
    for t, term in enumerate(terminals):
        if term.name in ignored:
            ign |= 1 << t
    return _Lexer(tuple(t.name for t in terminals), trans, bitsets(alive_m), bitsets(accept_m), alive_m, accept_m,
                  rank, ign, comps)


@dataclass(frozen=True, eq=False)
class _Parser:
    """lark's LALR table as plain dicts: actions[state][terminal] = (is_shift, target or rule)."""

    actions: tuple[dict, ...]
    gotos: tuple[dict, ...]
    rules: tuple[tuple[int, str], ...]  # (length of the expansion, origin)
    initial: int
    end_state: int


def _build_parser(lark_obj, start: str, term_index: dict[str, int]) -> tuple[_Parser, list[int], dict[int, str]]:
    from lark.parsers.lalr_analysis import Shift

    table = lark_obj.parser.parser.parser.parse_table
    rule_names = {rule.origin.name for rule in lark_obj.rules}
    for row in table.states.values():
        for sym in row:
            if sym != _END and sym not in term_index and sym not in rule_names:
                raise UnsupportedFeatureError(
                    f"terminal {sym} has no pattern (%declare): only a lark postlexer can produce it, "
                    "and guide runs none; define the terminal instead",
                    feature="declare",
                    where=sym,
                )
    n = max(table.states) + 1
    rule_ids: dict = {}
    rules: list[tuple[int, str]] = []
    actions: list[dict] = [{} for _ in range(n)]
    gotos: list[dict] = [{} for _ in range(n)]
    lark_accepts = [0] * n
    access: dict[int, str] = {}  # state -> the symbol every transition into it reads
    for state, row in table.states.items():
        acc = 0
        for sym, (action, arg) in row.items():
            is_term = sym == _END or sym in term_index
            if action is Shift:
                access[arg] = sym
                if is_term:
                    actions[state][sym] = (True, arg)
                else:
                    gotos[state][sym] = arg
            else:
                rid = rule_ids.get(arg)
                if rid is None:
                    rid = rule_ids[arg] = len(rules)
                    rules.append((len(arg.expansion), arg.origin.name))
                actions[state][sym] = (False, rid)
            if sym in term_index:
                acc |= 1 << term_index[sym]
        lark_accepts[state] = acc
    parser = _Parser(tuple(actions), tuple(gotos), tuple(rules), table.start_states[start], table.end_states[start])
    return parser, lark_accepts, access


def _wrap_lark_error(exc: Exception) -> GrammarError:
    msg = str(exc)
    if "collision" in msg.lower() or "conflict" in msg.lower():
        return GrammarError(f"the grammar is not LALR(1): {msg.strip()}")
    line, col = getattr(exc, "line", None), getattr(exc, "column", None)
    if line is not None and col is not None and f"line {line}" not in msg:
        msg = f"{msg} (at line {line} column {col})"
    return GrammarError(f"invalid lark grammar: {msg.strip()}")


@dataclass(frozen=True)
class Layout:
    """Layout rules of indentation languages that lark's contextual lexer cannot state.

    lark admits every ``%ignore``d terminal everywhere and lexes a keyword only where the parser
    takes it; Python needs newlines ignored only inside brackets (implicit line joining), no
    leading spaces before the first statement, and reserved keywords. All three only change
    which terminals the lexer considers in a parser state (never the parse table).

    - ``keywords_of``: the identifier terminal; it and every string terminal it also matches
      (``if``, ``pass``, ...) are lexed in every state, so that a keyword is never taken as an
      identifier, nor the start of an identifier as a keyword.
    - ``bracket_ignored``: ``%ignore``d terminals admitted only inside ``()``, ``[]``, ``{}``:
      the parser stack is scanned from the top for an unmatched opening bracket, down to a
      state entered by one of ``line_breaks`` (terminals the grammar never takes inside
      brackets), so that a mask reads only the stack of the current logical line.
    - ``not_leading``: ``%ignore``d terminals not admitted at the very start of the text.
    - ``line_comments``: ``%ignore``d terminals that end where a line does: outside brackets
      they are admitted only where the parser takes a line break next (elsewhere the text
      could never go on after them: a dead end for generation).
    """

    keywords_of: str | None = None
    bracket_ignored: tuple[str, ...] = ()
    line_breaks: tuple[str, ...] = ()
    not_leading: tuple[str, ...] = ()
    line_comments: tuple[str, ...] = ()


_OPENERS = ("(", "[", "{")
_CLOSERS = (")", "]", "}")


def _layout_tables(layout: Layout, terminals: list, lexer: _Lexer, parser: _Parser, access: dict[int, str],
                   lark_accepts: list[int]) -> tuple[tuple[int, ...], tuple[int, ...], int, int, int]:
    """(per state accept sets, per state bracket marks, bracket-only, line break and line comment bits).

    Marks: 1 = entered by an opening bracket, -1 = by a closing one, 2 = by a line break (so it
    lies outside brackets), 0 = other.
    """
    import re

    from lark.lexer import PatternStr

    index = {name: i for i, name in enumerate(lexer.names)}

    def bits(names: tuple[str, ...], what: str, ignored: bool) -> int:
        out = 0
        for name in names:
            if name not in index:
                raise GrammarError(f"Layout.{what} names {name!r}, which is no terminal of the grammar")
            if ignored and not (lexer.ignored >> index[name]) & 1:
                raise GrammarError(f"Layout.{what} names {name!r}, which is not %ignore'd")
            out |= 1 << index[name]
        return out

    keywords = 0
    if layout.keywords_of is not None:
        ident = bits((layout.keywords_of,), "keywords_of", False)
        regexp = re.compile(_terminal_regex(terminals[ident.bit_length() - 1]))
        for t, term in enumerate(terminals):
            if isinstance(term.pattern, PatternStr) and regexp.fullmatch(term.pattern.value):
                keywords |= 1 << t
        # and the identifier too, so that "ordinal" after a name is one identifier (rejected)
        # rather than the keyword "or" and "dinal"
        keywords |= ident
    bracket = bits(layout.bracket_ignored, "bracket_ignored", True)
    breaks = bits(layout.line_breaks, "line_breaks", False)
    leading = bits(layout.not_leading, "not_leading", True)
    comments = bits(layout.line_comments, "line_comments", True)
    if (bracket or comments) and not breaks:
        raise GrammarError("Layout.bracket_ignored and line_comments need line_breaks")
    accepts = [(a | lexer.ignored | keywords) & ~bracket for a in lark_accepts]
    accepts[parser.initial] &= ~leading
    kinds = {}
    for t, term in enumerate(terminals):
        if isinstance(term.pattern, PatternStr) and term.pattern.value in _OPENERS:
            kinds[term.name] = 1
        elif isinstance(term.pattern, PatternStr) and term.pattern.value in _CLOSERS:
            kinds[term.name] = -1
        elif (breaks >> t) & 1:
            kinds[term.name] = 2
    marks = tuple(kinds.get(access.get(st, ""), 0) for st in range(len(lark_accepts)))
    return tuple(accepts), marks, bracket, breaks, comments


# ---------------------------------------------------------------------------------------------
# The constraint


def _build_tables(lark_text: str, start: str, layout: Layout | None, lark_cache: bool, max_rules: int,
                  time_budget_s: float, started: float) -> tuple:
    """The vocabulary-independent part of a grammar: lark's tables, the product lexer, our parser."""
    import lark

    try:
        from ._no_lexer import NoLexer

        # guide lexes every grammar itself: lark's own per-state lexers (a fifth of its build
        # time on JSON Schema grammars) are only built for Grammar.parses, on first use
        options: dict = {"parser": "lalr", "lexer": NoLexer, "start": start}
        if lark_cache:
            options["cache"] = _lark_cache_path(lark_text, options)
        lark_obj = build_lark(lark_text, **options)
    except lark.exceptions.LarkError as exc:
        raise _wrap_lark_error(exc) from exc
    except (KeyError, ValueError) as exc:
        raise GrammarError(f"invalid lark grammar: {exc}") from exc
    except RecursionError:
        raise GrammarError("the grammar's rules nest too deeply for lark to build its tables") from None
    if len(lark_obj.rules) > max_rules:
        raise GrammarError(f"the grammar has {len(lark_obj.rules):,} rules, over max_rules={max_rules:,}")
    ignored = set(lark_obj.lexer_conf.ignore)
    terminals = list(lark_obj.terminals)
    lexer = _build_lexer(terminals, ignored, time_budget_s, started + time_budget_s)
    index = {name: i for i, name in enumerate(lexer.names)}
    parser, lark_accepts, access = _build_parser(lark_obj, start, index)
    if layout is None:
        return (lark_obj, terminals, lexer, parser, tuple(a | lexer.ignored for a in lark_accepts), (), 0, 0, 0)
    return (lark_obj, terminals, lexer, parser,
            *_layout_tables(layout, terminals, lexer, parser, access, lark_accepts))


class _Memo:
    """A small LRU of built grammar tables, so that constructing the same grammar again in this
    process (a server seeing one schema per request) costs a dictionary look-up."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: dict = {}
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            hit = self.items.pop(key, None)
            if hit is not None:
                self.items[key] = hit
            return hit

    def put(self, key, value) -> None:
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.pop(next(iter(self.items)))

    def clear(self) -> None:
        with self.lock:
            self.items.clear()


_BUILT = _Memo(16)


def clear_build_memo() -> None:
    """Forget the built grammar tables of this process, and the terminal automata they were built
    from (benchmarks of cold builds call this)."""
    _BUILT.clear()
    clear_regex_memo()


class Grammar(Constraint):
    """Text accepted by lark's LALR parser (contextual lexer) for `lark_text`."""

    def __init__(
        self,
        lark_text: str,
        *,
        start: str = "start",
        max_grammar_bytes: int = MAX_GRAMMAR_BYTES,
        max_rules: int = MAX_RULES,
        max_depth: int = MAX_STACK_DEPTH,
        time_budget_s: float = COMPILE_BUDGET_S,
        layout: Layout | None = None,
        lark_cache: bool = False,
    ) -> None:
        """`lark_cache`: keep lark's parse table in guide's cache folder (lark's own pickle, checked
        against the grammar's hash), for large grammars whose LALR build takes seconds."""
        if not isinstance(lark_text, str):
            raise TypeError(f"`lark_text` has to be a str, but is {type(lark_text).__name__}")
        started = time.monotonic()
        size = len(lark_text.encode("utf-8", "surrogatepass"))
        if size > max_grammar_bytes:
            raise GrammarError(
                f"the grammar text is {size:,} bytes, over max_grammar_bytes={max_grammar_bytes:,}"
            )
        self.lark_text = lark_text
        self.start = start
        self.max_depth = max_depth
        if layout is not None and not isinstance(layout, Layout):
            raise TypeError(f"`layout` has to be a Layout, but is {type(layout).__name__}")
        self.layout = layout
        memo_key = (lark_text, start, layout, lark_cache)
        built = _BUILT.get(memo_key)
        if built is None:
            built = _build_tables(lark_text, start, layout, lark_cache, max_rules, time_budget_s, started)
            _BUILT.put(memo_key, built)
        (self.lark, self._terminals, self._lexer, self._parser, self._lark_accepts, self._marks,
         self._bracket_bits, self._break_bits, self._comment_bits) = built
        if len(self.lark.rules) > max_rules:
            raise GrammarError(
                f"the grammar has {len(self.lark.rules):,} rules, over max_rules={max_rules:,}"
            )
        self._oracle: GrammarCompiled | None = None
        self._lark_parser = None

    @property
    def key(self) -> str:
        depth = "" if self.max_depth == MAX_STACK_DEPTH else f"depth={self.max_depth}\x00"
        layout = "" if self.layout is None else f"layout={self.layout!r}\x00"
        return "lark:" + depth + layout + self.start + "\x00" + self.lark_text

    def parses(self, text: str) -> bool:
        """Whether lark itself accepts `text` (the oracle; handy in tests).

        With a `Layout`, lark's parser knows none of its rules, so our own lexer and parser
        decide (byte by byte, over a vocabulary of the 256 single bytes).
        """
        if self.layout is not None:
            return self._layout_parses(text)
        import lark

        if self._lark_parser is None:
            self._lark_parser = build_lark(self.lark_text, parser="lalr", lexer="contextual", start=self.start)
        try:
            self._lark_parser.parse(text)
        except lark.exceptions.LarkError:
            return False
        return True

    def _bytes_compiled(self) -> GrammarCompiled:
        """Our lexer and parser over a vocabulary of the 256 single bytes (no model needed)."""
        if self._oracle is None:
            from ..vocab import Vocabulary

            vocab = Vocabulary.from_bytes([bytes([b]) for b in range(256)] + [b""], eos_ids=[256])
            self._oracle = self._compile(vocab)  # type: ignore[assignment]
        return self._oracle

    def _layout_parses(self, text: str) -> bool:
        c = self._bytes_compiled()
        out = c.consume(c.initial_stack(), c.lexer.initial, text.encode("utf-8", "surrogatepass"))
        return out is not None and c.end_ok(*out)

    def prefix_error(self, text: str) -> str | None:
        """None when `text` can start a text of this grammar (as guide lexes and parses it), else
        where it stops being one ("line L, column C")."""
        c = self._bytes_compiled()
        data = text.encode("utf-8", "surrogatepass")
        state: tuple | None = (c.initial_stack(), c.lexer.initial)
        for i in range(len(data)):
            state = c.consume(*state, data[i : i + 1])
            if state is None:
                line = data[:i].count(b"\n") + 1
                column = i - (data.rfind(b"\n", 0, i) + 1) + 1
                return f"line {line}, column {column}"
        return None

    def continuation(self, prefix: str, *, open_end: bool = False) -> GrammarContinuation:
        """Text that goes on from `prefix`: prefix + text is a text of this grammar, or with
        `open_end` the start of one (EOS allowed anywhere; the length is left to other parts)."""
        return GrammarContinuation(self, prefix, open_end=open_end)

    def _compile(self, vocab: Vocabulary) -> Compiled:
        return GrammarCompiled(vocab, self._lexer, self._parser, self._lark_accepts, max_depth=self.max_depth,
                               marks=self._marks, bracket_bits=self._bracket_bits, break_bits=self._break_bits,
                               comment_bits=self._comment_bits)


# ---------------------------------------------------------------------------------------------
# Compiled form: lazily filled caches, safe to share between threads (a race at worst
# computes a value twice)


class _Node:
    """A set of token remainders (unit, offset) starting a fresh lexeme."""

    __slots__ = ("offs", "rows")

    def __init__(self, rows: np.ndarray, offs: np.ndarray) -> None:
        self.rows = rows
        self.offs = offs


class _Walk:
    """All tokens of one node (or of the vocabulary) walked from one lexer state under one accept set."""

    __slots__ = ("acc", "by_valid", "cross", "group0", "inside_ends", "inside_ids", "term0")

    def __init__(self, acc: int) -> None:
        self.acc = acc
        self.inside_ids: np.ndarray
        self.inside_ends: np.ndarray
        self.group0: np.ndarray | None = None  # packed tokens that end the current lexeme at once
        self.term0: int = -1
        self.cross: list[tuple[int, _Node]] = []
        self.by_valid: dict[int, np.ndarray] = {}


def _expand(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The integers of the ranges [lo, hi), range after range."""
    counts = hi - lo
    total = int(counts.sum())
    return np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(total, dtype=np.int64)


class _SuffixCache:
    """Values keyed by (key, the top `need` entries of a parser stack).

    A value computed from a stack that read only its top `need` entries holds for every stack
    with the same top `need` entries; lookups try each depth recorded for `key`, shallowest first.
    Bounded: cleared when full (a race between threads only recomputes a value).
    """

    __slots__ = ("data", "depths", "limit")

    def __init__(self, limit: int) -> None:
        self.depths: dict = {}
        self.data: dict = {}
        self.limit = limit

    def get(self, key, stack: tuple[int, ...]):
        depths = self.depths.get((key, stack[-1]))
        if depths:
            data = self.data
            n = len(stack)
            for k in depths:
                if k > n:
                    break
                hit = data.get((key, stack[n - k :]))
                if hit is not None:
                    return hit
        return None

    def put(self, key, stack: tuple[int, ...], need: int, value) -> None:
        need = max(1, min(need, len(stack)))
        if len(self.data) >= self.limit:
            self.data.clear()
        slot = (key, stack[-1])
        depths = self.depths.get(slot, ())
        if need not in depths:  # copy-on-write: readers in other threads never see a list change
            self.depths[slot] = tuple(sorted((*depths, need)))
        self.data[(key, stack[len(stack) - need :])] = value


class GrammarCompiled(Compiled):
    def __init__(
        self,
        vocab: Vocabulary,
        lexer: _Lexer,
        parser: _Parser,
        lark_accepts: tuple[int, ...],
        *,
        max_depth: int = MAX_STACK_DEPTH,
        marks: tuple[int, ...] = (),
        bracket_bits: int = 0,
        break_bits: int = 0,
        comment_bits: int = 0,
    ) -> None:
        self.vocab = vocab
        self.max_depth = max_depth
        self.marks = marks
        self.bracket_bits = bracket_bits
        self.break_bits = break_bits
        self.comment_bits = comment_bits
        self.lexer = lexer
        self.parser = parser
        self.lark_accepts = lark_accepts
        self.width = bitmask_width(vocab.model_width)
        self.eos_mask = bits_from_ids(sorted(vocab.eos_ids), vocab.model_width)
        self.zero = np.zeros(self.width, dtype=np.int32)
        self.table = token_table(vocab)
        self._build_units()
        self._trans_rows: list[list[int]] | None = None
        self._feed = _SuffixCache(_CACHE_LIMIT)
        self._end = _SuffixCache(_CACHE_LIMIT)
        self._ctx = _SuffixCache(_CACHE_LIMIT)
        self._node_cache = _SuffixCache(_MASK_CACHE_LIMIT)
        self._best: dict = {}
        self._restricted: dict = {}
        self._alive_under: dict[int, np.ndarray] = {}  # acc -> bool [n + 1]: some terminal of acc alive
        self._preds: dict = {}
        self._viable: dict = {}
        self._walks: dict = {}
        self._class_walks: dict = {}
        self._acc_cols: dict[int, np.ndarray] = {}
        self._node_walks: dict = {}
        self._masks = _SuffixCache(_MASK_CACHE_LIMIT)
        self._node_ids: dict[tuple[bytes, bytes], _Node] = {}
        self._ign_best = self._flags(lexer.ignored)
        self._rank = np.array(lexer.rank, dtype=np.int64)
        self._accept_ranked = lexer.accept_mat[:, self._rank]
        self._after: dict[int, tuple[int, ...]] = self._accepts_after()
        first = self.mask(self.initial_stack(), lexer.initial)
        if not first.any():
            raise EmptyLanguageError("no token of the vocabulary can start a text of this grammar")
        self._precompute_error: BaseException | None = None
        self._precompute_thread: threading.Thread | None = None
        if _PRECOMPUTE_BUDGET_S > 0:
            self._precompute_thread = threading.Thread(
                target=self._precompute_guarded, args=(_PRECOMPUTE_BUDGET_S,), name="guide-precompute", daemon=True
            )
            _WALKERS.add(self._precompute_thread)
            self._precompute_thread.start()

    @property
    def trans_rows(self) -> list[list[int]]:
        """The lexer's transitions as lists (byte-by-byte lexing in `consume`); built off the first
        mask's path, by the background thread or the first advance."""
        rows = self._trans_rows
        if rows is None:
            rows = self._trans_rows = self.lexer.trans.tolist()
        return rows

    def wait_precomputed(self, timeout: float | None = None) -> bool:
        """Wait for the background walks (benchmarks timing steady state do); False on timeout."""
        t = self._precompute_thread
        if t is not None:
            t.join(timeout)
            if t.is_alive():
                return False
        if self._precompute_error is not None:
            raise self._precompute_error
        return True

    def _precompute_guarded(self, budget_s: float) -> None:
        # An error here would recur, and be raised, where the foreground computes the same mask;
        # it is kept for wait_precomputed rather than printed from a thread.
        try:
            self.trans_rows  # noqa: B018 - built here rather than on the first advance
            self._precompute(budget_s)
        except BaseException as exc:  # noqa: BLE001
            self._precompute_error = exc
        finally:
            _WALKERS.discard(threading.current_thread())

    def _build_units(self) -> None:
        """Tokens as sequences of byte classes (bytes the lexer cannot tell apart), deduplicated:
        every walk runs over these units, far fewer than tokens for most grammars. The trie of
        units is the vocabulary's byte trie with bytes replaced by their classes."""
        trans = self.lexer.trans
        _, cls = unique_rows(np.ascontiguousarray(trans.T))
        _, first, cls = np.unique(cls, return_index=True, return_inverse=True)
        cls = np.asarray(cls).reshape(-1)
        self.n_cls = n_cls = int(cls.max()) + 1
        # classes numbered in order of their first byte, so class c is represented by byte rep[c]
        order = np.argsort(first)
        renum = np.empty_like(order)
        renum[order] = np.arange(len(order))
        self.cls = renum[cls].astype(np.int64)
        self.rep = np.sort(first)
        table = self.table
        bt = table.trie
        depth = table.data.shape[1]
        # the class trie, level by level; maps[j]: byte-trie node at level j -> class-trie node
        # (nodes of a level are numbered in the order of their spelling, so siblings are adjacent)
        self.trie_parent: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
        self.trie_cls: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
        maps = [np.zeros(1, dtype=np.int64)]
        rank = np.empty(_DENSE_KEYS, dtype=np.int64)  # untouched pages cost nothing
        for j in range(1, depth + 1):
            span = len(self.trie_parent[j - 1]) if j > 1 else 1
            key = maps[-1][bt.parent[j]] * (n_cls + 1) + self.cls[bt.byte[j]]
            if span * (n_cls + 1) <= _DENSE_KEYS:  # distinct keys by marking (np.unique sorts)
                seen = np.zeros(span * (n_cls + 1), dtype=bool)
                seen[key] = True
                uniq = np.flatnonzero(seen)
                rank[uniq] = np.arange(len(uniq))
                inv = rank[key]
            else:
                uniq, inv = np.unique(key, return_inverse=True)
            maps.append(inv.reshape(-1))
            self.trie_parent.append(uniq // (n_cls + 1))
            self.trie_cls.append(uniq % (n_cls + 1))
        sizes = [1] + [len(p) for p in self.trie_parent[1:]]
        # the class-trie nodes where tokens end (rows are longest first: length j is one slice)
        lengths = table.lengths
        bounds = np.searchsorted(-lengths, -np.arange(depth + 2), side="right")  # rows of length >= j: [:bounds[j]]
        ends: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * (depth + 1)
        has_end = [np.zeros(n, dtype=bool) for n in sizes]
        for j in range(1, depth + 1):
            ends[j] = maps[j][bt.end[int(bounds[j + 1]) : int(bounds[j])]]
            has_end[j][ends[j]] = True
        # Units are the distinct class sequences, numbered depth-first (a node's own unit after its
        # descendants'), so that every trie node spans a contiguous range of units: a walk that
        # sees a prefix die settles its whole range at once.
        size = [np.zeros(0, dtype=np.int64)] * (depth + 1)
        size[depth] = has_end[depth].astype(np.int64)
        for j in range(depth - 1, -1, -1):
            below = np.bincount(self.trie_parent[j + 1], weights=size[j + 1], minlength=sizes[j]).astype(np.int64)
            size[j] = below + has_end[j]
        self.trie_lo: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]  # level j: node -> its first unit
        self.trie_hi: list[np.ndarray] = [size[0]]  # level j: node -> past its last unit
        self.trie_unit: list[np.ndarray] = [np.full(1, -1, dtype=np.int64)]  # level j: node -> unit ending there, or -1
        self.trie_kids: list[tuple[np.ndarray, np.ndarray]] = []  # level j: node -> its children's range at j + 1
        for j in range(1, depth + 1):
            par = self.trie_parent[j]
            kids = np.bincount(par, minlength=sizes[j - 1])
            past_kid = np.cumsum(kids)
            first_kid = past_kid - kids
            self.trie_kids.append((first_kid, past_kid))
            before = np.cumsum(size[j]) - size[j]
            lo = self.trie_lo[j - 1][par] + before - before[first_kid[par]]
            hi = lo + size[j]
            self.trie_lo.append(lo)
            self.trie_hi.append(hi)
            self.trie_unit.append(np.where(has_end[j], hi - 1, -1))
        self.trie_kids.append((np.zeros(sizes[depth], dtype=np.int64),) * 2)
        n_units = int(size[0][0])
        unit_of = np.empty(len(lengths), dtype=np.int64)
        for j in range(1, depth + 1):
            unit_of[int(bounds[j + 1]) : int(bounds[j])] = self.trie_unit[j][ends[j]]
        # one token row per unit: remainders of tokens after a lexeme boundary are walked unit by
        # unit, reading that row's bytes through the classes
        self.unit_row = np.empty(n_units, dtype=np.int64)
        self.unit_row[unit_of] = np.arange(len(unit_of), dtype=np.int64)
        self.ulen = lengths[self.unit_row]
        self.unit_of = unit_of
        # token id -> unit, padded to whole mask words; special, empty and padding ids -> the
        # extra unit len(units), which is never chosen
        self.unit_of_id = np.full(32 * self.width, n_units, dtype=np.int64)
        self.unit_of_id[table.ids] = unit_of
        self.all_units = np.arange(n_units, dtype=np.int64)

    def _accepts_after(self) -> dict[int, tuple[int, ...]]:
        """terminal -> the accept sets of the states a shift of it can lead to."""
        lx = self.lexer
        index = {name: i for i, name in enumerate(lx.names)}
        out: dict[int, set[int]] = {t: set() for t in range(len(lx.names))}
        for row in self.parser.actions:
            for sym, (is_shift, target) in row.items():
                if is_shift and sym in index:
                    out[index[sym]].add(self.lark_accepts[target])
        for t in range(len(lx.names)):
            if (lx.ignored >> t) & 1:  # an ignored lexeme leaves the parser where it was
                out[t] = set(self.lark_accepts)
        return {t: tuple(sorted(v)) for t, v in out.items()}

    def _accs_in_parse_order(self) -> list[int]:
        """The distinct accept sets, in breadth-first order of the LALR states from the start, so
        that the budget goes first to what the beginning of a text needs."""
        p = self.parser
        seen = {p.initial}
        order = [p.initial]
        i = 0
        while i < len(order):
            st = order[i]
            i += 1
            targets = [a[1] for a in p.actions[st].values() if a[0]] + list(p.gotos[st].values())
            for nxt in targets:
                if nxt not in seen:
                    seen.add(nxt)
                    order.append(nxt)
        order += [st for st in range(len(self.lark_accepts)) if st not in seen]
        accs = [self.lark_accepts[st] for st in order]
        if self.bracket_bits:  # Layout: the same states inside brackets (as ctx_n widens them)
            accs += [(self.lark_accepts[st] | self.bracket_bits) & ~self.break_bits for st in order if self.marks[st] != 2]
        return list(dict.fromkeys(accs))

    def _precompute(self, budget_s: float) -> None:
        """Walk the vocabulary for every (accept set, lexer state) pair the grammar can reach, and
        the token remainders after each lexeme boundary, until `budget_s` CPU seconds of this
        thread run out (the rest is computed lazily on first use). Between walks the GIL is let go,
        so that a mask the foreground needs now waits for one walk at most."""
        deadline = time.thread_time() + budget_s
        lx = self.lexer
        todo_nodes: list[tuple[_Node, int]] = []
        # Breadth-first over (accept set, lexer state), lexeme starts of every accept set first.
        queue = deque((acc, lx.initial) for acc in self._accs_in_parse_order())
        seen = set(queue)
        while queue:
            acc, q = queue.popleft()
            w = self._top_walk(acc, q)
            for term, node in w.cross:
                todo_nodes.extend((node, a) for a in self._after[term])
            tr = self.restricted(acc)[0]
            for r in np.unique(tr[q * self.n_cls : (q + 1) * self.n_cls]).tolist():
                if r != lx.dead and (acc, r) not in seen:
                    seen.add((acc, r))
                    queue.append((acc, r))
            if time.thread_time() > deadline or _EXITING.is_set():
                return
            time.sleep(0)
        while todo_nodes:
            node, acc = todo_nodes.pop()
            key = (id(node), acc)
            if key in self._node_walks:
                continue
            w = self._node_walk(node, acc)
            for term, child in w.cross:
                todo_nodes.extend((child, a) for a in self._after[term])
            if time.thread_time() > deadline or _EXITING.is_set():
                return
            time.sleep(0)

    # -- parser ---------------------------------------------------------------------------------
    #
    # Every parser-dependent result (a feed, the accept sets, a mask) depends only on the top few
    # entries of the stack: each computation records how deep it read (`need`), and its cache
    # entry is keyed by that suffix, so masks are shared by all stacks that agree on it.

    def initial_stack(self) -> tuple[int, ...]:
        return (self.parser.initial,)

    def _reduce_to(self, stack: tuple[int, ...], term: str, end: bool):
        """Run the LALR actions for `term`: (result stack or None / end reached, need, kept prefix)."""
        p = self.parser
        n = len(stack)
        lo = n - 1
        keep = n
        st = stack
        while True:
            act = p.actions[st[-1]].get(term)
            if act is None:
                return None, n - lo, keep
            if act[0]:
                return (None if end else st + (act[1],)), n - lo, keep
            size, origin = p.rules[act[1]]
            base = st[:-size] if size else st
            if len(base) <= keep:
                keep = len(base)
                lo = min(lo, keep - 1)
            st = base + (p.gotos[base[-1]][origin],)
            if end and st[-1] == p.end_state:
                return st, n - lo, keep

    def feed_n(self, stack: tuple[int, ...], term: str) -> tuple[tuple[int, ...] | None, int]:
        """(stack after shifting `term`, or None when the parser rejects it; need)."""
        hit = self._feed.get(term, stack)
        if hit is None:
            result, need, keep = self._reduce_to(stack, term, False)
            hit = (None if result is None else (len(stack) - keep, result[keep:]), need)
            self._feed.put(term, stack, need, hit)
        value, need = hit
        if value is None:
            return None, need
        drop, pushed = value
        return stack[: len(stack) - drop] + pushed, need

    def feed(self, stack: tuple[int, ...], term: str) -> tuple[int, ...] | None:
        return self.feed_n(stack, term)[0]

    def accepts_end_n(self, stack: tuple[int, ...]) -> tuple[bool, int]:
        hit = self._end.get(None, stack)
        if hit is None:
            result, need, _ = self._reduce_to(stack, _END, True)
            hit = (result is not None, need)
            self._end.put(None, stack, need, hit)
        return hit

    def accepts_end(self, stack: tuple[int, ...]) -> bool:
        return self.accepts_end_n(stack)[0]

    def ctx_n(self, stack: tuple[int, ...]) -> tuple[int, int, int]:
        """(terminals the contextual lexer considers, those of them the parser really takes, need)."""
        hit = self._ctx.get(None, stack)
        if hit is not None:
            return hit
        lx = self.lexer
        lark_acc = self.lark_accepts[stack[-1]]
        need = 1
        inside = False
        if self.bracket_bits:
            inside, need = self._inside_brackets(stack)
            if inside:  # a line break is never lexed inside brackets, even where lark's table reduces on one
                lark_acc = (lark_acc | self.bracket_bits) & ~self.break_bits
        valid = lx.ignored & lark_acc
        rest = lark_acc & ~lx.ignored
        t = 0
        while rest:
            if rest & 1:
                nxt, n = self.feed_n(stack, lx.names[t])
                need = max(need, n)
                if nxt is not None:
                    valid |= 1 << t
            rest >>= 1
            t += 1
        if self.comment_bits and not inside and not valid & self.break_bits:
            # a line comment ends at a line break, which the parser cannot take here: a dead end
            lark_acc &= ~self.comment_bits
            valid &= ~self.comment_bits
        hit = (lark_acc, valid, need)
        self._ctx.put(None, stack, need, hit)
        return hit

    def _inside_brackets(self, stack: tuple[int, ...]) -> tuple[bool, int]:
        """(an opening bracket of `stack` is still open, how deep the scan read): Layout.bracket_ignored."""
        marks = self.marks
        balance = 0
        n = len(stack)
        for depth in range(1, n + 1):
            mark = marks[stack[n - depth]]
            if mark == 1:
                if balance == 0:
                    return True, depth
                balance -= 1
            elif mark == -1:
                balance += 1
            elif mark == 2:
                return False, depth
        return False, n

    def ctx(self, stack: tuple[int, ...]) -> tuple[int, int]:
        acc, valid, _ = self.ctx_n(stack)
        return acc, valid

    def step_n(self, stack: tuple[int, ...], term: int) -> tuple[tuple[int, ...] | None, int]:
        if (self.lexer.ignored >> term) & 1:
            return stack, 0
        return self.feed_n(stack, self.lexer.names[term])

    def step(self, stack: tuple[int, ...], term: int) -> tuple[int, ...] | None:
        return self.step_n(stack, term)[0]

    # -- lexer helpers ----------------------------------------------------------------------------

    def best(self, bits: int) -> int:
        """The terminal a lexeme accepting `bits` is lexed as (-1 when none)."""
        hit = self._best.get(bits)
        if hit is None:
            hit = -1
            for t in self.lexer.rank:
                if (bits >> t) & 1:
                    hit = t
                    break
            self._best[bits] = hit
        return hit

    def restricted(self, acc: int) -> tuple[np.ndarray, np.ndarray]:
        """(flat transitions that die when no terminal of `acc` survives, best terminal per state)."""
        hit = self._restricted.get(acc)
        if hit is None:
            lx = self.lexer
            in_acc = self._flags(acc)[:-1]
            alive = lx.alive_mat[:, in_acc].any(axis=1)
            trans = lx.trans[:, self.rep]
            tr = np.where(alive[trans], trans, lx.dead).astype(np.int32).reshape(-1)  # int32: half the memory
            ranked = self._accept_ranked & in_acc[self._rank]  # [n + 1, k], columns best first
            best = np.where(ranked.any(axis=1), self._rank[ranked.argmax(axis=1)], -1).astype(np.int64)
            self._alive_under[acc] = alive
            hit = self._restricted[acc] = (tr, best)
        return hit

    def viable(self, acc: int, valid: int) -> np.ndarray:
        """bool [n + 1]: the lexeme can still grow (under `acc`) into one lexed as a `valid` terminal."""
        key = (acc, valid)
        hit = self._viable.get(key)
        if hit is None and valid & acc == acc:
            # every terminal of `acc` is valid: a lexeme that can still grow into any of them
            # grows into one lexed as some terminal of `acc` (the terminals' own automata are trimmed)
            self.restricted(acc)
            hit = self._viable[key] = self._alive_under[acc].copy()
            hit[self.lexer.dead] = False
        if hit is None:
            _tr, best = self.restricted(acc)
            n = self.lexer.dead
            good = self._flags(valid)[best]  # best == -1 -> last slot, False
            good[n] = False
            # backwards breadth-first search over the restricted transitions: each edge is looked
            # at once (a fixpoint over the whole table cost one full pass per level)
            indptr, preds = self._predecessors(acc)
            frontier = np.flatnonzero(good)
            while frontier.size:
                starts, ends = indptr[frontier], indptr[frontier + 1]
                counts = ends - starts
                total = int(counts.sum())
                if not total:
                    break
                offs = np.repeat(starts - np.cumsum(counts) + counts, counts)
                cand = preds[offs + np.arange(total)]
                cand = cand[~good[cand]]
                if not cand.size:
                    break
                good[cand] = True
                frontier = np.unique(cand)
            good[n] = False
            hit = self._viable[key] = good
        return hit

    def _predecessors(self, acc: int) -> tuple[np.ndarray, np.ndarray]:
        """CSR of the reversed restricted transition graph: predecessors of state s are
        preds[indptr[s]:indptr[s + 1]] (dead state excluded)."""
        hit = self._preds.get(acc)
        if hit is None:
            tr, _best = self.restricted(acc)
            n = self.lexer.dead
            keep = np.flatnonzero(tr[: n * self.n_cls] != n)  # the dead state has no edges
            dst = tr[keep]
            src = (keep // self.n_cls).astype(np.int32)
            order = np.argsort(dst, kind="stable")  # a state reached by several classes repeats: harmless
            indptr = np.zeros(n + 2, dtype=np.int64)
            indptr[1:] = np.cumsum(np.bincount(dst, minlength=n + 1))
            hit = self._preds[acc] = (indptr, src[order])
        return hit

    # -- vocabulary walks ---------------------------------------------------------------------------

    def _trie_walk(self, start: int, acc: int) -> _Walk:
        """Every unit walked from lexer state `start`, one trie level at a time, stepping only the
        prefixes still inside the lexeme: a prefix that ends the lexeme (or is rejected) settles
        its whole range of units at once, so a walk costs what survives, not the vocabulary."""
        tr, best = self.restricted(acc)
        dead, ncls, init = self.lexer.dead, self.n_cls, self.lexer.initial
        ign = self._ign_best
        restarts = bool(self.lexer.ignored)
        nodes = np.zeros(1, dtype=np.int64)  # the running prefixes (trie nodes), and their states
        states = np.array([start], dtype=np.int64)
        in_ids: list[np.ndarray] = []
        in_ends: list[np.ndarray] = []
        ranges: list[tuple[np.ndarray, np.ndarray, int, np.ndarray]] = []  # lexeme ends: (lo, hi, brk, state before)
        for j in range(1, len(self.trie_parent)):
            first, past = self.trie_kids[j - 1]
            lo, hi = first[nodes], past[nodes]
            counts = hi - lo
            total = int(counts.sum())
            if not total:
                break
            if len(nodes) == 1:
                kids = np.arange(int(lo[0]), int(hi[0]), dtype=np.int64)
                prev = np.full(total, int(states[0]), dtype=np.int64)
            else:
                kids = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(total, dtype=np.int64)
                prev = np.repeat(states, counts)
            byte = self.trie_cls[j][kids]
            nxt = tr[prev * ncls + byte]
            died = nxt == dead
            if died.any():
                if restarts and not (j == 1 and start == init):
                    restart = died & ign[best[prev]]
                    if restart.any():
                        # an ignored lexeme ends: lexing restarts inline with this byte
                        nxt[restart] = tr[init * ncls + byte[restart]]  # dead again: rejected, dropped below
                        died &= ~restart
                if died.any():
                    sel = kids[died]
                    ranges.append((self.trie_lo[j][sel], self.trie_hi[j][sel], j - 1, prev[died]))
                live = nxt != dead
                kids, nxt = kids[live], nxt[live]
            unit = self.trie_unit[j][kids]
            ended = unit >= 0
            in_ids.append(unit[ended])
            in_ends.append(nxt[ended])
            nodes, states = kids, nxt
        w = _Walk(acc)
        w.inside_ids = np.concatenate(in_ids) if in_ids else np.zeros(0, dtype=np.int64)
        w.inside_ends = np.concatenate(in_ends) if in_ends else np.zeros(0, dtype=np.int64)
        by_term: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}  # lexemes ending inside tokens
        for lo, hi, brk, prev in ranges:
            if brk == 0:
                if start != init and int(best[start]) >= 0:
                    w.term0 = int(best[start])
                    w.group0 = self._pack_ranges(lo, hi)
                continue
            terms = best[prev]
            for t in np.unique(terms).tolist():
                if t >= 0:
                    units = _expand(lo[terms == t], hi[terms == t])
                    by_term.setdefault(t, []).append((units, np.full(len(units), brk, dtype=np.int64)))
        for t in sorted(by_term):  # one node per terminal, its units in order (nodes are interned by content)
            units = np.concatenate([u for u, _ in by_term[t]])
            offs = np.concatenate([o for _, o in by_term[t]])
            order = np.argsort(units, kind="stable")
            w.cross.append((t, self._intern(units[order], offs[order])))
        return w

    def _walk(self, rows: np.ndarray, offs: np.ndarray, start: int, acc: int) -> _Walk:
        """Token remainders (unit `rows[i]` from byte `offs[i]`), unit by unit."""
        tr, best = self.restricted(acc)
        dead = self.lexer.dead
        data, lengths, ncls, cls = self.table.data, self.ulen, self.n_cls, self.cls
        tok_rows = self.unit_row[rows]
        n = len(rows)
        st = np.full(n, start, dtype=np.int64)
        brk = np.full(n, -1, dtype=np.int64)
        run = np.arange(n, dtype=np.int64)
        base = offs
        rem = lengths[rows] - base
        init = self.lexer.initial
        ign = self._ign_best
        j = 0
        while run.size:
            run = run[rem[run] > j]
            if not run.size:
                break
            byte = cls[data[tok_rows[run], base[run] + j]]
            nxt = tr[st[run] * ncls + byte]
            died = nxt == dead
            if died.any():
                # An ignored lexeme ends here: the parser state (so the accept set) is unchanged,
                # so lexing just restarts inline with this byte.
                prev = st[run]
                restart = died & ign[best[prev]]
                if j == 0 and start == init:
                    restart[:] = False
                if restart.any():
                    again = tr[init * ncls + byte[restart]]
                    nxt[restart] = again
                    gone = np.flatnonzero(restart)[again == dead]
                    brk[run[gone]] = -2  # rejected
                    died = nxt == dead
                    died[gone] = False
                    stop = died.copy()
                    stop[gone] = True
                else:
                    stop = died
                brk[run[died]] = j
                keep = ~stop
                run = run[keep]
                nxt = nxt[keep]
            st[run] = nxt
            j += 1
        return self._walk_result(rows, base, start, brk, st, best, acc)

    def _walk_result(self, rows, base, start, brk, st, best, acc) -> _Walk:
        w = _Walk(acc)
        inside = brk == -1
        w.inside_ids = rows[inside]
        w.inside_ends = st[inside]
        at0 = brk == 0
        if start != self.lexer.initial and at0.any():
            t0 = int(best[start])
            if t0 >= 0:
                w.term0 = t0
                w.group0 = self._pack(rows[at0])
        later = brk > 0
        if later.any():
            idx = np.flatnonzero(later)
            terms = best[st[idx]]
            for t in np.unique(terms).tolist():
                if t < 0:
                    continue
                sel = idx[terms == t]
                w.cross.append((int(t), self._intern(rows[sel], base[sel] + brk[sel])))
        return w

    def _flags(self, bits: int) -> np.ndarray:
        """bool [k + 1]: terminal index -> in the bitset `bits` (index -1, no terminal, -> False)."""
        k = len(self.lexer.names)
        raw = np.frombuffer(bits.to_bytes((k + 8) // 8, "little"), dtype=np.uint8)
        return np.unpackbits(raw, bitorder="little")[: k + 1].astype(bool)

    def _intern(self, rows: np.ndarray, offs: np.ndarray) -> _Node:
        """One node per distinct remainder set, so that walks of equal sets are shared."""
        key = (rows.tobytes(), offs.tobytes())
        node = self._node_ids.get(key)
        if node is None:
            node = self._node_ids[key] = _Node(rows, offs)
        return node

    def _pack_ranges(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """The packed mask of every token whose unit is in one of the disjoint ranges [lo, hi)."""
        n = len(self.all_units) + 1
        edge = np.bincount(lo, minlength=n + 1)[:n] - np.bincount(hi, minlength=n + 1)[:n]
        return self._pack_chosen(np.cumsum(edge) > 0)  # the last slot (never allowed) is past every range

    def _pack(self, units: np.ndarray) -> np.ndarray:
        """The packed mask of every token whose unit is in `units`."""
        chosen = np.zeros(len(self.all_units) + 1, dtype=bool)  # the last slot: never allowed
        chosen[units] = True
        return self._pack_chosen(chosen)

    def _pack_chosen(self, chosen: np.ndarray) -> np.ndarray:
        """bool [units + 1] -> the packed mask of their tokens."""
        return np.packbits(chosen[self.unit_of_id], bitorder="little").view("<i4").astype(np.int32, copy=False)

    def _inside_bits(self, w: _Walk, acc: int, valid: int) -> np.ndarray:
        hit = w.by_valid.get(valid)
        if hit is None:
            good = self.viable(acc, valid)
            sel = w.inside_ids[good[w.inside_ends]]
            hit = w.by_valid[valid] = self._pack(sel) if sel.size else self.zero
        return hit

    def _top_walk(self, acc: int, q: int) -> _Walk:
        lx = self.lexer
        reduced = acc & lx.alive[q]
        # Walks restart after an ignored lexeme, and then every terminal of `acc` matters.
        key = (acc if reduced & lx.ignored else reduced, q)
        w = self._walks.get(key)
        if w is None:
            # Under the accept set, a product state behaves as the tuple of its terminals' own
            # states restricted to that set: states that agree there (a free string's body reached
            # through the prefixes of other, now excluded, terminals) share one walk. Its
            # end states differ from q's own only within such classes, which `viable` cannot tell apart.
            cols = self._acc_cols.get(key[0])
            if cols is None:
                cols = self._acc_cols[key[0]] = np.flatnonzero(self._flags(key[0]))
            ckey = (key[0], q == lx.initial, lx.comps[q, cols].tobytes())
            w = self._class_walks.get(ckey)
            if w is None:
                w = self._class_walks[ckey] = self._trie_walk(q, key[0])
            self._walks[key] = w
        return w

    def _node_walk(self, node: _Node, acc: int) -> _Walk:
        key = (id(node), acc)
        w = self._node_walks.get(key)
        if w is None:
            w = self._node_walks[key] = self._walk(node.rows, node.offs, self.lexer.initial, acc)
        return w

    def _after_step(self, stack, term: int, sub) -> tuple[np.ndarray | None, int]:
        """Evaluate `sub(next stack)` after lexeme `term`; (bits or None, need on `stack`)."""
        nxt, need = self.step_n(stack, term)
        if nxt is None:
            return None, need
        bits, sub_need = sub(nxt)
        return bits, max(need, len(stack) - len(nxt) + sub_need)

    def _node_bits(self, node: _Node, stack: tuple[int, ...]) -> tuple[np.ndarray, int]:
        hit = self._node_cache.get(id(node), stack)
        if hit is not None:
            return hit
        acc, valid, need = self.ctx_n(stack)
        w = self._node_walk(node, acc)
        bits = self._inside_bits(w, acc, valid)
        for term, child in w.cross:
            sub, n = self._after_step(stack, term, lambda s, c=child: self._node_bits(c, s))
            need = max(need, n)
            if sub is not None:
                bits = bits | sub
        self._node_cache.put(id(node), stack, need, (bits, need))
        return bits, need

    def end_ok_n(self, stack: tuple[int, ...], q: int) -> tuple[bool, int]:
        """EOS may follow: the current lexeme (if any) closes and the parse is complete."""
        if q == self.lexer.initial:
            return self.accepts_end_n(stack)
        acc, _, need = self.ctx_n(stack)
        term = self.best(self.lexer.accept[q] & acc)
        if term < 0:
            return False, need
        ok, n = self._after_step(stack, term, self.accepts_end_n)
        return bool(ok), max(need, n)

    def end_ok(self, stack: tuple[int, ...], q: int) -> bool:
        return self.end_ok_n(stack, q)[0]

    def mask(self, stack: tuple[int, ...], q: int) -> np.ndarray:
        """int32 [W], EOS included; cached, never modify the returned array."""
        return self.mask_n(stack, q)[0]

    def mask_n(self, stack: tuple[int, ...], q: int) -> tuple[np.ndarray, int]:
        hit = self._masks.get(q, stack)
        if hit is not None:
            return hit
        acc, valid, need = self.ctx_n(stack)
        w = self._top_walk(acc, q)
        inside = bits = self._inside_bits(w, w.acc, valid & w.acc)
        if w.group0 is not None:
            sub, n = self._after_step(stack, w.term0, lambda s: self.mask_n(s, self.lexer.initial))
            need = max(need, n)
            if sub is not None:
                bits = bits | (sub & w.group0)
        for term, node in w.cross:
            sub, n = self._after_step(stack, term, lambda s, nd=node: self._node_bits(nd, s))
            need = max(need, n)
            if sub is not None:
                bits = bits | sub
        ok, n = self.end_ok_n(stack, q)
        need = max(need, n)
        if ok:
            bits = bits | self.eos_mask
        if bits is inside:
            bits = inside.copy()
        hit = (bits, need)
        self._masks.put(q, stack, need, hit)
        return hit

    def consume(self, stack: tuple[int, ...], q: int, data: bytes) -> tuple[tuple[int, ...], int] | None:
        """Lex and parse `data` from (stack, q) exactly as the masks do; None when impossible."""
        lx = self.lexer
        rows, alive, accept = self.trans_rows, lx.alive, lx.accept
        dead, init = lx.dead, lx.initial
        acc = self.ctx(stack)[0]
        for b in data:
            q2 = rows[q][b]
            if q2 != dead and alive[q2] & acc:
                q = q2
                continue
            if q == init:
                return None
            term = self.best(accept[q] & acc)
            if term < 0:
                return None
            stack = self.step(stack, term)
            if stack is None:
                return None
            acc = self.ctx(stack)[0]
            q = rows[init][b]
            if q == dead or not alive[q] & acc:
                return None
        return stack, q

    def matcher(self) -> GrammarMatcher:
        return GrammarMatcher(self, self.initial_stack(), self.lexer.initial, False, [])


class GrammarMatcher(Matcher):
    __slots__ = ("compiled", "done", "history", "open_end", "q", "stack")

    def __init__(self, compiled: GrammarCompiled, stack: tuple[int, ...], q: int, done: bool, history: list,
                 open_end: bool = False) -> None:
        self.compiled = compiled
        self.stack = stack
        self.q = q
        self.done = done
        self.history = history
        self.open_end = open_end  # EOS allowed anywhere (GrammarContinuation)

    @property
    def vocab(self) -> Vocabulary:  # type: ignore[override]
        return self.compiled.vocab

    def _mask(self) -> np.ndarray:
        c = self.compiled
        if self.done:
            return c.eos_mask
        mask = c.mask(self.stack, self.q)
        return mask | c.eos_mask if self.open_end else mask

    def fill_bitmask(self, bitmask: np.ndarray, row: int = 0) -> None:
        bitmask[row] = self._mask()

    def advance(self, token_id: int) -> bool:
        if self.done:
            return False
        c = self.compiled
        vocab = c.vocab
        if not 0 <= token_id < vocab.model_width:
            return False
        if not (int(self._mask()[token_id >> 5]) >> (token_id & 31)) & 1:
            return False
        if token_id in vocab.eos_ids:
            self.history.append((self.stack, self.q, self.done))
            self.done = True
            return True
        out = c.consume(self.stack, self.q, vocab.tokens[token_id])
        if out is None:  # cannot happen when the mask is right; keep the state unchanged
            return False
        if len(out[0]) > c.max_depth:
            raise GrammarError(
                f"token {token_id} ({vocab.tokens[token_id]!r}) nests the parse deeper than "
                f"max_depth={c.max_depth} parser states; raise it with grammar(..., max_depth=N)"
            )
        self.history.append((self.stack, self.q, self.done))
        self.stack, self.q = out
        return True

    def is_accepting(self) -> bool:
        return self.done or self.open_end or self.compiled.end_ok(self.stack, self.q)

    def is_finished(self) -> bool:
        if self.done:
            return True
        c = self.compiled
        if not self.open_end and not c.end_ok(self.stack, self.q):
            return False
        return not (c.mask(self.stack, self.q) & ~c.eos_mask).any()

    def fork(self) -> GrammarMatcher:
        return GrammarMatcher(self.compiled, self.stack, self.q, self.done, list(self.history), self.open_end)

    def rollback(self, n: int = 1) -> None:
        if n > len(self.history):
            raise ValueError(f"cannot roll back {n} tokens: only {len(self.history)} were consumed")
        for _ in range(n):
            self.stack, self.q, self.done = self.history.pop()


class GrammarContinuation(Constraint):
    """The text after `prefix` in `grammar`'s language (`Grammar.continuation`): a completion
    of code already written, say. The prefix is lexed and parsed once per vocabulary."""

    def __init__(self, grammar: Grammar, prefix: str, *, open_end: bool = False) -> None:
        if not isinstance(grammar, Grammar):
            raise TypeError(f"`grammar` has to be a Grammar, but is {type(grammar).__name__}")
        if not isinstance(prefix, str):
            raise TypeError(f"`prefix` has to be a str, but is {type(prefix).__name__}")
        where = grammar.prefix_error(prefix)
        if where is not None:
            raise GrammarError(f"the prefix is not the start of a text of the grammar (at {where})")
        self.grammar = grammar
        self.prefix = prefix
        self.open_end = open_end

    @property
    def key(self) -> str:
        return f"continue:{int(self.open_end)}:{len(self.prefix)}\x00{self.prefix}\x00{self.grammar.key}"

    def _compile(self, vocab: Vocabulary) -> Compiled:
        base = self.grammar.compile(vocab)
        assert isinstance(base, GrammarCompiled)
        state = base.consume(base.initial_stack(), base.lexer.initial, self.prefix.encode("utf-8", "surrogatepass"))
        if state is None:  # prefix_error said it lexes and parses; the same code decides here
            raise GrammarError("the prefix is not the start of a text of the grammar")
        return _ContinuationCompiled(base, state, self.open_end)


class _ContinuationCompiled(Compiled):
    def __init__(self, base: GrammarCompiled, state: tuple[tuple[int, ...], int], open_end: bool) -> None:
        self.base = base
        self.vocab = base.vocab
        self.state = state
        self.open_end = open_end

    def matcher(self) -> GrammarMatcher:
        return GrammarMatcher(self.base, self.state[0], self.state[1], False, [], self.open_end)


def grammar(
    lark_text: str,
    *,
    start: str = "start",
    max_grammar_bytes: int = MAX_GRAMMAR_BYTES,
    max_rules: int = MAX_RULES,
    max_depth: int = MAX_STACK_DEPTH,
    time_budget_s: float = COMPILE_BUDGET_S,
    layout: Layout | None = None,
) -> Grammar:
    """Constrain the generated text to a string lark's LALR parser accepts for `lark_text`.

    The limits bound the work one grammar can cause (docs/reliability.md): the grammar's size in
    bytes and rules, the time to build its lexer, and the parser stack (nesting) a generation may
    reach. `layout` adds the lexing rules of indentation languages (see `Layout`).

    Example:
        >>> from guide.grammars.cfg import grammar
        >>> g = grammar('start: "(" start ")" | "x"')
    """
    return Grammar(
        lark_text,
        start=start,
        max_grammar_bytes=max_grammar_bytes,
        max_rules=max_rules,
        max_depth=max_depth,
        time_budget_s=time_budget_s,
        layout=layout,
    )


_BUILTINS = ("json", "arithmetic", "sql", "python")
PYTHON_MAX_LEVEL = 12  # deepest block level of builtin("python") (4 spaces a level)
PYTHON_LAYOUT = Layout(
    keywords_of="NAME",
    bracket_ignored=("BRACKET_NL",),
    line_breaks=tuple(f"_NL{k}" for k in range(PYTHON_MAX_LEVEL + 1)),
    not_leading=("WS",),
    line_comments=("COMMENT",),
)


def expand_levels(template: str, max_level: int) -> str:
    """Write out the block between ``// LEVELS BEGIN`` and ``// LEVELS END`` once per level 0..max_level.

    In it, ``@k`` is the level, ``@n`` the next one, ``@p`` a terminal priority (k + 2, so that
    lark's first-match lexer tries deeper indentation first, as our longest match does) and
    ``@s`` the regex of 4*k spaces; a line starting with ``?0`` is kept at level 0 only, one
    with ``?n`` below `max_level` only.
    """
    head, sep, rest = template.partition("// LEVELS BEGIN\n")
    body, sep2, tail = rest.partition("// LEVELS END\n")
    if not sep or not sep2:
        raise GrammarError("the level template needs '// LEVELS BEGIN' and '// LEVELS END' lines")
    out = [head]
    for k in range(max_level + 1):
        for line in body.splitlines(keepends=True):
            if line.startswith("?0"):
                if k:
                    continue
                line = "  " + line[2:]
            elif line.startswith("?n"):
                if k == max_level:
                    continue
                line = "  " + line[2:]
            spaces = f" {{{4 * k}}}" if k else ""
            out.append(line.replace("@k", str(k)).replace("@n", str(k + 1)).replace("@p", str(k + 2)).replace("@s", spaces))
    out.append(tail)
    return "".join(out)


def builtin_text(name: str) -> str:
    if name not in _BUILTINS:
        raise ValueError(f"unknown builtin grammar {name!r}; choose one of {', '.join(_BUILTINS)}")
    text = resources.files("guide.grammars").joinpath("builtin", f"{name}.lark").read_text(encoding="utf-8")
    return expand_levels(text, PYTHON_MAX_LEVEL) if name == "python" else text


def builtin(name: str) -> Grammar:
    """One of the grammars shipped with guide: "json" (RFC 8259), "arithmetic", "sql", "python"
    (a Python 3 subset with indentation; its header lists what it covers)."""
    if name == "python":  # lark's LALR build of its ~800 rules takes seconds: cached on disk
        return Grammar(builtin_text(name), layout=PYTHON_LAYOUT, lark_cache=True)
    return Grammar(builtin_text(name))


__all__ = [
    "Grammar", "GrammarCompiled", "GrammarContinuation", "GrammarMatcher", "Layout", "builtin", "builtin_text",
    "clear_build_memo", "grammar",
]
