"""A lark lexer that builds nothing (its own module, so that lark's cache can pickle it by name)."""

from __future__ import annotations

import lark.lexer

from ..errors import GrammarError


class NoLexer(lark.lexer.Lexer):
    """guide lexes with its own automaton, so lark's per-state lexers (a third of lark's build
    time for the Python grammar, a fifth for JSON Schema grammars) are skipped."""

    def __init__(self, conf) -> None:
        pass

    def lex(self, *args):
        raise GrammarError("this lark object has no lexer; use Grammar.parses")
