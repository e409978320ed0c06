"""`guide tools` and `guide json --reason` on a tiny random Llama (the commands' plumbing, not quality)."""

from __future__ import annotations

import json

import jsonschema
import pytest
from typer.testing import CliRunner

from guide.cli.app import app

pytestmark = pytest.mark.model
RUNNER = CliRunner()
UNIT = {"type": "object", "properties": {"unit": {"enum": ["c", "f"]}}, "required": ["unit"], "additionalProperties": False}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": UNIT}},
    {"type": "function", "function": {"name": "get_time", "parameters": UNIT}},
]


@pytest.fixture(scope="module")
def model_dir(tiny_llama_dir):
    return tiny_llama_dir


def test_tools_prints_parsed_calls(model_dir, tmp_path):
    tools_file = tmp_path / "tools.json"
    tools_file.write_text(json.dumps(TOOLS))
    result = RUNNER.invoke(app, ["tools", "--tools", str(tools_file), "Weather in Oslo?", "--model", str(model_dir),
                                 "--no-text", "--max-calls", "2", "--max-tokens", "80"])
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["complete"] and record["text"].startswith('{"tool_calls": [')
    assert 1 <= len(record["tool_calls"]) <= 2
    for call in record["tool_calls"]:
        assert call["name"] in {"get_weather", "get_time"}
        jsonschema.validate(call["arguments"], UNIT)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{\"name\": \"a\"}, {\"name\": \"a\"}]", "duplicate tool name 'a'"),
        ("{\"x\": 1}", "expected a JSON list of tools"),
        ("[{\"name\": \"a\", \"parameters\": {\"type\": \"array\", \"uniqueItems\": true}}]", "tool 'a' (tools[0])"),
        ("not json", "the tools file is not JSON"),
    ],
)
def test_bad_tools_files_exit_2_before_loading_a_model(tmp_path, content, message):
    tools_file = tmp_path / "tools.json"
    tools_file.write_text(content)
    result = RUNNER.invoke(app, ["tools", "--tools", str(tools_file), "hi", "--model", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert message in result.stderr and result.stdout == ""


def test_json_reason_reasons_then_validates(model_dir, tmp_path):
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(UNIT))
    result = RUNNER.invoke(app, ["json", "--schema", str(schema_file), "Which unit?", "--model", str(model_dir),
                                 "--reason", "--max-reasoning-tokens", "5", "--max-tokens", "40"])
    assert result.exit_code == 0, result.stderr
    text = result.stdout.strip()
    assert text.startswith("<think>")
    _, _, answer = text.partition("</think>")
    jsonschema.validate(json.loads(answer), UNIT)
