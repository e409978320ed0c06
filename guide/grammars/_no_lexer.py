"""A lark lexer that builds nothing (its own module, so that lark's cache can pickle it by name)."""

from __future__ import annotations

import lark.lexer

from ..errors import GrammarError


class NoLexer(lark.lexer.Lexer):
    """A `Layout` grammar is lexed by guide alone, so lark's per-state lexers (a third of lark's
    build time for the Python grammar) are skipped."""

    def __init__(self, conf) -> None:
        pass

    def lex(self, *args):
        raise GrammarError("a Layout grammar is lexed by guide only (Grammar.parses)")
