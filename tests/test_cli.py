"""The `guide` command: every command and error path, with stdout and stderr apart.

Most tests drive the typer app in process with a tiny random Llama saved to a folder (so
`--model PATH` is exercised); one runs the installed console script on the embedded model.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import AutoTokenizer
from typer.testing import CliRunner

from guide.cli.app import app

pytestmark = pytest.mark.model
RUNNER = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tiny_llama_dir):
    return tiny_llama_dir


def invoke(*args: str, stdin: str | None = None):
    return RUNNER.invoke(app, list(args), input=stdin)


def test_regex_output_fully_matches(model_dir):
    result = invoke("regex", r"\d{3}-\d{4}", "Call me at?", "--model", str(model_dir))
    assert result.exit_code == 0, result.stderr
    assert re.fullmatch(r"\d{3}-\d{4}", result.stdout.strip()), result.stdout


def test_choose_and_stdin_prompt(model_dir):
    result = invoke("choose", "-", "--option", "red", "--option", "green", "--model", str(model_dir), stdin="Pick a colour")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() in {"red", "green"}


def test_json_output_and_sampling(model_dir):
    result = invoke("regex", "[a-z]{2,5}", "x", "--model", str(model_dir), "--json", "--sampler", "sample", "--seed", "3")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert re.fullmatch("[a-z]{2,5}", record["text"]) and record["complete"] is True
    assert record["tokens"] and record["timings"]["generate_s"] >= 0


def test_batch_input_writes_one_line_per_prompt(model_dir, tmp_path):
    batch = tmp_path / "in.jsonl"
    batch.write_text('{"prompt": "one"}\n"two"\n\n{"prompt": "three"}\n')
    result = invoke("regex", "(yes|no)", "--input", str(batch), "--model", str(model_dir), "--no-chat")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and set(lines) <= {"yes", "no"}


def test_mbr_sampler_prints_the_selected_candidate(model_dir):
    result = invoke("regex", "[a-z]{2,5}", "x", "--model", str(model_dir), "--sampler", "mbr", "--utility", "exact",
                    "--n", "3", "--seed", "1", "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert len(record["candidates"]) == 3 and record["text"] == record["candidates"][record["index"]]
    assert re.fullmatch("[a-z]{2,5}", record["text"]) and record["utility_calls"] == 3
    assert record["expected_utility"][record["index"]] == max(record["expected_utility"])


def test_incomplete_output_exits_1(model_dir):
    result = invoke("regex", "[a-z]{50}", "x", "--model", str(model_dir), "--max-tokens", "2")
    assert result.exit_code == 1
    assert "ran out" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["regex", "abc)", "x"], "invalid regex"),
        (["regex", r"(a)\1", "x"], "backreference"),
        (["regex", "a", "   "], "prompt is empty"),
        (["regex", "a", "x", "--model", "/no/such/model"], "never downloads"),
        (["regex", "a", "x", "--sampler", "mbr", "--utility", "rouge"], "--utility has to be one of"),
        (["regex", "a", "x", "--sampler", "cd", "--amateur", "/no/such/amateur"], "never downloads"),
        (["regex", "a", "x", "--sampler", "nope"], "has to be one of"),
        (["regex", "a", "--input", "/no/such.jsonl"], "cannot read"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = invoke(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_option_range_errors_are_usage_errors():
    assert invoke("regex", "a", "x", "--sampler", "asap", "--n", "0").exit_code == 2


def test_bad_jsonl_names_line_and_column(tmp_path):
    batch = tmp_path / "in.jsonl"
    batch.write_text('"fine"\n{oops}\n')
    result = invoke("regex", "a", "--input", str(batch))
    assert result.exit_code == 2 and f"{batch}:2:2" in result.stderr


def test_info_reports_kernels():
    result = invoke("info", "--json")
    assert result.exit_code == 0
    facts = json.loads(result.stdout)
    assert "torch" in facts["mask_kernels"] and facts["guide"]


def test_help_is_fast_and_complete():
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "guide.cli", "--help"], capture_output=True, text=True, check=True)
    assert time.perf_counter() - start < 1.5
    for command in ("regex", "choose", "info", "bench"):
        assert command in out.stdout


def test_console_script_on_the_embedded_model():
    exe = Path(sys.executable).with_name("guide")
    out = subprocess.run(
        [str(exe), "regex", r"(19|20)\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])",
         "Write 14 March 2023 as an ISO date.", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert re.fullmatch(r"(19|20)\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])", record["text"])


PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_json_output_validates_against_the_schema(model_dir, tmp_path):
    import jsonschema

    schema = tmp_path / "person.json"
    schema.write_text(json.dumps(PERSON))
    # 8 characters may be spelled as \uXXXX escapes: up to ~80 bytes in all
    result = invoke("json", "--schema", str(schema), "A person:", "--model", str(model_dir), "--max-tokens", "160")
    assert result.exit_code == 0, result.stderr
    jsonschema.validate(json.loads(result.stdout), PERSON)


def test_grammar_output_parses_with_lark(model_dir, tmp_path):
    import lark

    text = 'start: "(" NUM "+" NUM ")"\nNUM: /[1-9][0-9]?/\n'  # at most 9 bytes: always completes
    path = tmp_path / "sum.lark"
    path.write_text(text)
    result = invoke("grammar", "--lark", str(path), "sum:", "--model", str(model_dir), "--max-tokens", "16")
    assert result.exit_code == 0, result.stderr
    lark.Lark(text, parser="lalr").parse(result.stdout.strip())


def test_validate_reports_unsupported_keywords_and_checks_data(tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "array", "uniqueItems": True}))
    result = invoke("validate", "--schema", str(schema))
    assert result.exit_code == 1
    assert "/uniqueItems" in result.stdout and "uniqueItems" in result.stderr
    schema.write_text(json.dumps(PERSON))
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text('{"name": "Al", "age": 3}')
    bad.write_text('{"name": "Al", "age": 300}')
    assert invoke("validate", "--schema", str(schema), str(good)).exit_code == 0
    rejected = invoke("validate", "--schema", str(schema), str(bad))
    assert rejected.exit_code == 1 and "rejected" in rejected.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "s.json:1:2: the schema is not JSON"), ('{"type": "strnig"}', "strnig")],
)
def test_bad_schema_files_exit_2_with_location(tmp_path, content, message):
    schema = tmp_path / "s.json"
    schema.write_text(content)
    result = invoke("json", "--schema", str(schema), "x")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_files_and_grammar_errors_exit_2(tmp_path):
    assert "cannot read --schema" in invoke("json", "--schema", str(tmp_path / "none.json"), "x").stderr
    bad = tmp_path / "bad.lark"
    bad.write_text("start: (\n")
    result = invoke("grammar", "--lark", str(bad), "x")
    assert result.exit_code == 2 and "line" in result.stderr


def test_asap_sampler_prints_n_samples(model_dir):
    result = invoke("choose", "x", "--option", "yes", "--option", "no", "--sampler", "asap", "--n", "5",
                    "--seed", "1", "--model", str(model_dir), "--json")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 5 and {r["text"] for r in records} <= {"yes", "no"}
    assert all(r["diagnostics"]["trie_nodes"] >= 1 for r in records)


@pytest.mark.parametrize("sampler", ["cd", "scd", "ead"])
def test_two_model_samplers_respect_the_constraint(model_dir, sampler):
    # the tiny model is its own "large" model here; the default second model is its first layer(s)
    flag = "--small" if sampler == "ead" else "--amateur"
    result = invoke("regex", "[0-9]{2}-[0-9]{2}", "x", "--model", str(model_dir), "--sampler", sampler,
                    flag, str(model_dir), "--json", "--max-tokens", "12")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert re.fullmatch("[0-9]{2}-[0-9]{2}", record["text"]) and record["complete"] is True
    assert record["sampler"] == sampler


DOCTEST_PROMPT = 'def add(a, b):\n    """Add.\n    >>> add(1, 2)\n    3\n    """\n'


def test_uscd_gate_extremes(model_dir):
    """--threshold 0: the contrast fires at every step where the constraint leaves a choice (the
    expert's entropy is then > 0); a huge threshold: never, and the output is the greedy one."""
    import guide

    common = ["regex", "[0-9]{2}-[0-9]{2}", DOCTEST_PROMPT, "--model", str(model_dir), "--json", "--max-tokens", "12",
              "--no-chat"]
    always = json.loads(invoke(*common, "--sampler", "uscd", "--threshold", "0").stdout)
    assert re.fullmatch("[0-9]{2}-[0-9]{2}", always["text"]) and always["complete"]
    vocab = guide.Vocabulary.from_tokenizer(AutoTokenizer.from_pretrained(model_dir))
    matcher = guide.regex("[0-9]{2}-[0-9]{2}").compile(vocab).matcher()
    choices = []
    for t in always["tokens"]:  # the last one finishes the match: no EOS step follows
        choices.append(len(matcher.allowed_tokens()) > 1)
        assert matcher.advance(t)
    assert always["diagnostics"]["contrast_fraction"] == pytest.approx(sum(choices) / len(choices))
    assert 0 < sum(choices) < len(choices)
    never = json.loads(invoke(*common, "--sampler", "uscd", "--threshold", "1000").stdout)
    assert never["diagnostics"]["contrast_fraction"] == 0.0
    assert never["text"] == json.loads(invoke(*common).stdout)["text"]


def test_uscd_needs_demonstrations_and_alpha_is_checked(model_dir):
    result = invoke("regex", "[0-9]", "no examples here", "--model", str(model_dir), "--sampler", "uscd")
    assert result.exit_code == 2 and "no demonstrations" in result.stderr
    assert invoke("regex", "[0-9]", "x", "--sampler", "cd", "--alpha", "1.5").exit_code == 2
    assert invoke("regex", "[0-9]", "x", "--sampler", "scd", "--gamma", "0").exit_code == 2


def test_ead_threshold_flag(model_dir):
    common = ["regex", "[0-9]{2}-[0-9]{2}", "x", "--model", str(model_dir), "--json", "--max-tokens", "12",
              "--sampler", "ead", "--small", str(model_dir)]
    # the flag reaches the policy: at 0 the large model takes most tokens (the small one starts, and
    # forced tokens have entropy 0), at 1000 none (tests/test_switching.py has the exact checks)
    assert json.loads(invoke(*common, "--threshold", "0").stdout)["diagnostics"]["large_fraction"] >= 0.5
    assert json.loads(invoke(*common, "--threshold", "1000").stdout)["diagnostics"]["large_fraction"] == 0.0


def test_usage_errors_of_the_installed_command_are_one_line():
    exe = Path(sys.executable).with_name("guide")
    for args in (["regex", "[0-9]", "x", "--alpha", "1.5"], ["regex"], ["nope"]):
        out = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 2, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("guide: "), out.stderr
        assert "Traceback" not in out.stderr and not out.stdout
