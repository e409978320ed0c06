"""The main job: extract structured values from a sentence with the embedded model, under a regex constraint."""

from __future__ import annotations

import re
import sys
import time

import guide

SENTENCE = (
    "The lease was signed in Lyon on the 14th of March 2023; for questions call "
    "the front desk at 555-0142 between 9 and 5."
)
TASKS = [
    ("ISO date", r"(19|20)\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])",
     "Write the date in this sentence in ISO format (YYYY-MM-DD).\n\n" + SENTENCE),
    ("phone number", r"\d{3}-\d{4}", "What phone number does this sentence give?\n\n" + SENTENCE),
]


def main() -> int:
    t0 = time.perf_counter()
    model, tok = guide.load_default_model()
    print(f"loaded the embedded model in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    failures = 0
    for name, pattern, prompt in TASKS:
        t0 = time.perf_counter()
        text = guide.generate(model, tok, prompt, guide.regex(pattern), max_new_tokens=32)
        ok = re.fullmatch(pattern, text) is not None
        failures += not ok
        print(f"{name:>12}: {text!r}   (regex {pattern}; full match: {ok}; {time.perf_counter() - t0:.2f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
