"""The main job: pull structured facts out of a sentence with the embedded model, as JSON valid
against a schema (examples/lease.schema.json), plus two regex-constrained answers."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import jsonschema

import guide

SENTENCE = (
    "The lease for the flat in Lyon was signed on the 14th of March 2023 at 950 euros a month; "
    "for questions call the front desk at 555-0142 between 9 and 5."
)
SCHEMA_FILE = Path(__file__).with_name("lease.schema.json")
REGEX_TASKS = [
    ("ISO date", r"(19|20)\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])",
     "Write the date in this sentence in ISO format (YYYY-MM-DD).\n\n" + SENTENCE),
    ("phone number", r"\d{3}-\d{4}", "What phone number does this sentence give?\n\n" + SENTENCE),
]


def main() -> int:
    t0 = time.perf_counter()
    model, tok = guide.load_default_model()
    print(f"loaded the embedded model in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    failures = 0

    schema = json.loads(SCHEMA_FILE.read_text())
    t0 = time.perf_counter()
    prompt = f"Extract the facts of this sentence as JSON with the keys {', '.join(schema['properties'])}.\n\n{SENTENCE}"
    text = guide.generate(model, tok, prompt, guide.json_schema(schema), max_new_tokens=96)
    try:
        jsonschema.validate(json.loads(text), schema, format_checker=jsonschema.FormatChecker())
        verdict = "valid against " + SCHEMA_FILE.name
    except (ValueError, jsonschema.ValidationError) as exc:
        verdict = f"INVALID: {exc}"
        failures += 1
    print(f"{'JSON':>12}: {text}   ({verdict}; {time.perf_counter() - t0:.2f} s)")

    for name, pattern, task in REGEX_TASKS:
        t0 = time.perf_counter()
        text = guide.generate(model, tok, task, guide.regex(pattern), max_new_tokens=32)
        ok = re.fullmatch(pattern, text) is not None
        failures += not ok
        print(f"{name:>12}: {text!r}   (regex {pattern}; full match: {ok}; {time.perf_counter() - t0:.2f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
