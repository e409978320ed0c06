"""Offline `LLM.generate` on a real vLLM CPU engine with guide's processor loaded from its entry point.

One engine for the module (about 30 s to start); a second, plugin-free engine in a subprocess
gives the reference outputs for the unconstrained requests.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from vllm_env import ENGINE_KWARGS, UNCONSTRAINED

import guide

pytestmark = pytest.mark.vllm

HERE = Path(__file__).parent

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
ITEMS = {
    "type": "array",
    "items": {"type": "integer", "minimum": 1, "maximum": 99},
    "minItems": 2,
    "maxItems": 4,
}
SUM = 'start: NUMBER " + " NUMBER " = " NUMBER\nNUMBER: /[0-9]{1,3}/\n'
DATE = r"\d{4}-\d{2}-\d{2}"
PHONE = r"\(\d{3}\) \d{3}-\d{4}"


@pytest.fixture(scope="module")
def baseline():
    proc = subprocess.run(
        [sys.executable, str(HERE / "baseline_without_plugin.py")],
        capture_output=True, text=True, timeout=300, check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BASELINE ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("BASELINE "))
    assert result["plugins_skipped"] == ["guide.integrations.vllm:GuideVLLMLogitsProcessor"]
    return result


@pytest.fixture(scope="module")
def llm(model_path, baseline):  # the baseline first: two engines at once would crowd the 2 cores
    from vllm import LLM

    engine = LLM(model=model_path, **ENGINE_KWARGS)
    yield engine
    engine.llm_engine.engine_core.shutdown()


def sp(max_tokens, **guide_args):
    from vllm import SamplingParams

    extra = {"guide": guide_args} if guide_args else None
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, extra_args=extra)


def run(llm, requests):
    outs = llm.generate([p for p, _ in requests], [s for _, s in requests], use_tqdm=False)
    return [o.outputs[0] for o in outs]


def test_json_schema_per_request_outputs_validate(llm):
    requests = [
        ("Invent a person. Answer in JSON:", sp(96, json_schema=PERSON)),
        ("A list of small numbers in JSON:", sp(64, json_schema=ITEMS)),
        ("Another person, as JSON:", sp(96, json_schema=PERSON)),
    ]
    outs = run(llm, requests)
    for out, schema in zip(outs, (PERSON, ITEMS, PERSON)):
        assert out.finish_reason == "stop", out.text
        jsonschema.validate(json.loads(out.text), schema)


def test_regex_per_request(llm):
    outs = run(llm, [("The date of the moon landing:", sp(24, regex=DATE)),
                     ("Call us at", sp(24, regex=PHONE))])
    assert re.fullmatch(DATE, outs[0].text), outs[0].text
    assert re.fullmatch(PHONE, outs[1].text), outs[1].text
    assert all(o.finish_reason == "stop" for o in outs)


def test_mixed_batch_leaves_unconstrained_requests_unchanged(llm, baseline):
    constrained = [
        ("Describe someone in JSON:", sp(96, json_schema=PERSON)),
        ("Some arithmetic:", sp(24, lark=SUM)),
        ("Today's date is", sp(24, regex=DATE)),
    ]
    free = [(prompt, sp(n)) for prompt, n in UNCONSTRAINED]
    # Interleaved, so constrained and unconstrained rows alternate in the batch.
    order = [constrained[0], free[0], constrained[1], free[1], constrained[2], free[2]]
    outs = run(llm, order)
    jsonschema.validate(json.loads(outs[0].text), PERSON)
    assert guide.grammar(SUM).parses(outs[2].text), outs[2].text
    assert re.fullmatch(DATE, outs[4].text), outs[4].text
    assert [list(o.token_ids) for o in outs[1::2]] == baseline["token_ids"]
    assert [o.text for o in outs[1::2]] == baseline["texts"]


def test_requests_join_and_finish_mid_batch(llm, baseline):
    """14 requests on 8 slots with different lengths: rows finish, move and get refilled."""
    kinds = [
        lambda n: sp(n, regex=DATE),
        lambda n: sp(n, json_schema=ITEMS),
        lambda n: sp(n, lark=SUM),
        lambda n: sp(n, regex=PHONE),
    ]
    requests, expect = [], []
    for i in range(14):
        if i % 5 == 4:
            prompt, n = UNCONSTRAINED[(i // 5) % len(UNCONSTRAINED)]
            requests.append((prompt, sp(n)))
            expect.append(("free", (i // 5) % len(UNCONSTRAINED)))
        else:
            requests.append((f"Example {i}:", kinds[i % 4](8 + 6 * (i % 7) + 40)))
            expect.append(("kind", i % 4))
    outs = run(llm, requests)
    for out, (what, which) in zip(outs, expect):
        if what == "free":
            assert list(out.token_ids) == baseline["token_ids"][which]
            continue
        assert out.finish_reason == "stop", out.text
        if which == 0:
            assert re.fullmatch(DATE, out.text)
        elif which == 1:
            jsonschema.validate(json.loads(out.text), ITEMS)
        elif which == 2:
            assert guide.grammar(SUM).parses(out.text), out.text
        else:
            assert re.fullmatch(PHONE, out.text)


TOOLS = [
    {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"], "additionalProperties": False}}},
    {"name": "weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
        "required": ["city"], "additionalProperties": False}},
]


def test_tools_and_reasoning_modes_in_one_batch(llm):
    """Issue 12's two modes through the engine: a forced tool call whose name is listed and whose
    arguments validate, and <think> reasoning (capped at 16 tokens) followed by a valid answer."""
    outs = run(llm, [("What is 6 plus 7? Call a tool.", sp(64, tools=TOOLS, allow_text=False)),
                     ("What is 6 plus 7?", sp(48, regex="[0-9]{1,3}", reason=True, max_reasoning_tokens=16))])
    call = json.loads(outs[0].text)["tool_calls"]
    assert call and {c["name"] for c in call} <= {"add", "weather"}, outs[0].text
    for c in call:
        schema = TOOLS[0]["function"]["parameters"] if c["name"] == "add" else TOOLS[1]["parameters"]
        jsonschema.validate(c["arguments"], schema)
    thought, _, answer = outs[1].text.partition("</think>")
    assert thought.startswith("<think>") and re.fullmatch("[0-9]{1,3}", answer), outs[1].text
    assert all(o.finish_reason == "stop" for o in outs)
