"""USCD's "lame" prompt: the standard few-shot prompt with its demonstrations removed, the task
description kept (ALGORITHMS.md 3.2). The contrast against it subtracts what the model would say
without the examples, so only the demonstrations go: nothing else in the prompt may change.

Demonstrations recognised, the forms code-generation prompts use (HumanEval, MBPP, MultiPL-E):
- doctest blocks: a `>>>` line, its `...` continuations and its expected-output lines, up to a
  blank line, the next `>>>`, or the line that closes the docstring;
- an "Example:" / "Examples:" / "For example:" header line directly before such a block, or before
  indented `call(...) == result` / `call(...) ➞ result` / `call(...) -> result` lines, which go too.
"""

from __future__ import annotations

import re

from ..errors import SamplerConfigError

_HEADER = re.compile(r"^\s*(?:for\s+)?examples?\s*:?\s*$", re.IGNORECASE)
_CALL_RESULT = re.compile(r"^\s+[A-Za-z_][\w.]*\(.*\)\s*(?:==|➞|->|=>|==>)\s*\S")
_DOC_END = ('"""', "'''")


def _ends_docstring(line: str) -> bool:
    return line.rstrip().endswith(_DOC_END) or line.strip().startswith(_DOC_END)


def lame_prompt(prompt: str, *, strict: bool = True) -> str:
    """`prompt` without its demonstrations. With `strict` (the default) a prompt without any
    raises SamplerConfigError: a lame prompt equal to the standard one would cancel the contrast."""
    lines = prompt.splitlines(keepends=True)
    keep = [True] * len(lines)
    i = 0
    removed = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith(">>>"):
            j = i + 1
            while j < len(lines):
                s = lines[j].strip()
                if not s or s.startswith(">>>"):
                    break
                if _ends_docstring(lines[j]):
                    if not s.startswith(_DOC_END):  # `    1"""`: the output goes, the quotes stay
                        indent = lines[j][: len(lines[j]) - len(lines[j].lstrip())]
                        quotes = s[-3:]
                        lines[j] = indent + quotes + lines[j][len(lines[j].rstrip()):]
                    break
                j += 1
            for k in range(i, j):
                keep[k] = False
            removed += 1
            i = j
            continue
        if _CALL_RESULT.match(lines[i]):
            keep[i] = False
            removed += 1
        i += 1
    # a header line whose block is gone (followed, after blank lines, by a removed line or the end)
    for i, line in enumerate(lines):
        if keep[i] and _HEADER.match(line):
            j = i + 1
            while j < len(lines) and keep[j] and not lines[j].strip():
                j += 1
            if j < len(lines) and not keep[j]:
                keep[i] = False
    text = "".join(line for line, k in zip(lines, keep) if k)
    if strict and not removed:
        raise SamplerConfigError(
            "USCD: the prompt holds no demonstrations (doctest `>>>` blocks or `call(...) == result` "
            "lines) to remove, so its lame prompt would equal it; pass lame prompts explicitly"
        )
    return text


__all__ = ["lame_prompt"]
