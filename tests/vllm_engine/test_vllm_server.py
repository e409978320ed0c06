"""The OpenAI-compatible vLLM server with guide's processor: constraints through `vllm_xargs`,
bad specs answered with HTTP 400 and guide's message, and the engine keeps serving."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from vllm_env import Server

pytestmark = pytest.mark.vllm

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 16}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}


@pytest.fixture(scope="module")
def server(model_path, tmp_path_factory):
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    srv = Server(model_path, log_path=str(log))
    try:
        srv.wait_ready()
    except (RuntimeError, TimeoutError):
        srv.stop()
        pytest.fail(f"server did not start; log:\n{log.read_text()[-4000:]}")
    yield srv
    srv.stop()


def complete(server, prompt, max_tokens=64, **xargs):
    body = {"model": "smollm2", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    if xargs:
        body["vllm_xargs"] = xargs
    return server.post("/v1/completions", body)


def test_completions_with_a_json_schema_return_valid_json(server):
    status, body = complete(server, "A person as JSON:", 96, json_schema=json.dumps(PERSON))
    assert status == 200, body
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop"
    jsonschema.validate(json.loads(choice["text"]), PERSON)


def test_regex_lark_and_chat(server):
    status, body = complete(server, "Call us at", 24, regex=r"\(\d{3}\) \d{3}-\d{4}")
    assert status == 200, body
    assert re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", body["choices"][0]["text"])
    status, body = complete(server, "Sum:", 24, lark='start: "x=" NUM\nNUM: /[0-9]{1,3}/', lark_start="start")
    assert status == 200, body
    assert re.fullmatch(r"x=[0-9]{1,3}", body["choices"][0]["text"])
    status, body = server.post("/v1/chat/completions", {
        "model": "smollm2", "max_tokens": 16, "temperature": 0,
        "messages": [{"role": "user", "content": "Is the sky blue?"}],
        "vllm_xargs": {"guide": json.dumps({"choice": ["yes", "no"]})},
    })
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] in ("yes", "no")


@pytest.mark.parametrize(
    ("xargs", "message"),
    [
        ({"json_schema": json.dumps({"type": "object", "properties": {"a": {"type": "frob"}}})},
         "guide: invalid json_schema: malformed schema at /properties/a/type"),
        ({"guide": json.dumps({"xml": "<a/>"})}, "guide: unknown constraint kind 'xml'"),
        ({"json_shema": "{}"}, "did you mean 'json_schema'?"),
        ({"json_schema": json.dumps({"type": "string", "pattern": "a" * 70_000})},
         "more than the limit of 65536"),
        ({"regex": "(unclosed"}, "guide: invalid regex"),
        ({"regex": "(a|b)*a(a|b){24}"}, "exceeds 50000 states"),
    ],
    ids=["invalid-schema", "unknown-kind", "misspelt-kind", "oversized-schema", "invalid-regex", "regex-too-large"],
)
def test_bad_specs_get_http_400_and_the_server_keeps_serving(server, xargs, message):
    status, body = complete(server, "Hello", 8, **xargs)
    assert status == 400, body
    assert message in json.dumps(body), body
    assert server.proc.poll() is None
    status, body = complete(server, "A person as JSON:", 96, json_schema=json.dumps(PERSON))
    assert status == 200, body
    jsonschema.validate(json.loads(body["choices"][0]["text"]), PERSON)
