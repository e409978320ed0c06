"""Constraint engines: regular expressions now; context-free grammars and JSON Schema build on the same byte DFAs."""
