"""The processor class driven directly with vLLM's BatchUpdate: exact masks, row moves, the cache.

No engine here (the whole file takes seconds); test_vllm_offline.py and test_vllm_server.py run the real one.
"""

from __future__ import annotations

import json
import logging
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality
from vllm.v1.sample.logits_processor import LogitsProcessor as V1LogitsProcessor
from vllm.v1.worker.gpu.sample.logits_processor.interface import (
    LogitsProcessor as V2LogitsProcessor,
)

import guide
from guide.constraint import COMPILE_CACHE
from guide.integrations import vllm as plugin
from guide.integrations.vllm import GuideVLLMLogitsProcessor, parse_request

pytestmark = pytest.mark.vllm

V = 49152
EOS = 2
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


@pytest.fixture(scope="module")
def vllm_config(model_path):
    model_config = SimpleNamespace(
        get_vocab_size=lambda: V,
        tokenizer=model_path,
        tokenizer_revision=None,
        trust_remote_code=False,
        hf_config=SimpleNamespace(eos_token_id=EOS),
    )
    return SimpleNamespace(model_config=model_config, scheduler_config=SimpleNamespace(max_num_seqs=4))


@pytest.fixture
def proc(vllm_config):
    return GuideVLLMLogitsProcessor(vllm_config, torch.device("cpu"), False)


@pytest.fixture(scope="module")
def vocab(tokenizer):
    return guide.Vocabulary.from_tokenizer(tokenizer, V, eos_token_id=EOS)


def params(**extra):
    return SamplingParams(max_tokens=16, extra_args=extra or None)


def update(*, added=(), removed=(), moved=(), size=4):
    return BatchUpdate(batch_size=size, removed=list(removed), added=list(added), moved=list(moved))


def allowed(row: torch.Tensor) -> list[int]:
    return torch.nonzero(torch.isfinite(row)).flatten().tolist()


def reference(spec, vocab, tokens=()):
    matcher = spec.compile(vocab).matcher()
    for t in tokens:
        assert matcher.advance(t)
    return matcher.allowed_tokens()


def test_one_class_is_both_interfaces():
    assert issubclass(GuideVLLMLogitsProcessor, V1LogitsProcessor)
    assert issubclass(GuideVLLMLogitsProcessor, V2LogitsProcessor)


def test_mixed_batch_masks_only_constrained_rows_exactly(proc, vocab):
    outputs = [[], [], []]
    proc.update_state(update(added=[
        (0, params(regex="[0-9]{3}-[a-z]{2}"), [1, 2], outputs[0]),
        (1, params(), [1, 2], outputs[1]),
        (2, params(guide={"json_schema": SCHEMA}), [5], outputs[2]),
    ], size=3))
    torch.manual_seed(0)
    logits = torch.randn(3, V)
    before = logits.clone()
    out = proc.apply(logits)
    assert out is logits
    assert torch.equal(logits[1], before[1])
    assert allowed(logits[0]) == reference(guide.regex("[0-9]{3}-[a-z]{2}"), vocab)
    assert allowed(logits[2]) == reference(guide.json_schema(SCHEMA), vocab)
    finite = torch.isfinite(logits[0])
    assert torch.equal(logits[0][finite], before[0][finite])  # allowed logits keep their values


def test_history_moves_removals_and_joins(proc, vocab, tokenizer):
    spec_re = guide.regex("[0-9]{3}-[a-z]{2}")
    spec_js = guide.json_schema(SCHEMA)
    out_re, out_free, out_js = [], [], []
    proc.update_state(update(added=[
        (0, params(regex="[0-9]{3}-[a-z]{2}"), [1], out_re),
        (1, params(), [1], out_free),
        (2, params(guide={"json_schema": SCHEMA}), [1], out_js),
    ], size=3))
    proc.apply(torch.zeros(3, V))
    # vLLM appends each sampled token to the live output lists between steps.
    re_tokens = tokenizer.encode("12", add_special_tokens=False)
    js_tokens = tokenizer.encode('{"name":"A', add_special_tokens=False)
    out_re.extend(re_tokens)
    out_js.extend(js_tokens)
    out_free.extend([7, 8])
    logits = torch.zeros(3, V)
    proc.apply(logits)
    assert allowed(logits[0]) == reference(spec_re, vocab, re_tokens)
    assert allowed(logits[1]) == list(range(V))
    assert allowed(logits[2]) == reference(spec_js, vocab, js_tokens)
    # The unconstrained request finishes, the rows swap, and a preempted request rejoins in the
    # freed row with output already generated: its matcher replays that history.
    joined = tokenizer.encode("98", add_special_tokens=False)
    proc.update_state(update(
        removed=[1],
        added=[(1, params(regex="[0-9]{3}-[a-z]{2}"), [1], list(joined))],
        moved=[(0, 2, MoveDirectionality.SWAP)],
        size=3,
    ))
    logits = torch.zeros(3, V)
    proc.apply(logits)
    assert allowed(logits[2]) == reference(spec_re, vocab, re_tokens)
    assert allowed(logits[0]) == reference(spec_js, vocab, js_tokens)
    assert allowed(logits[1]) == reference(spec_re, vocab, joined)
    # A one-way move and a removal shrink the batch to two rows.
    proc.update_state(update(removed=[0], moved=[(2, 0, MoveDirectionality.UNIDIRECTIONAL)], size=2))
    logits = torch.zeros(2, V)
    proc.apply(logits)
    assert allowed(logits[0]) == reference(spec_re, vocab, re_tokens)
    assert allowed(logits[1]) == reference(spec_re, vocab, joined)
    # An unconstrained request replacing a constrained row is left alone.
    proc.update_state(update(added=[(1, params(), [1], [])], size=2))
    logits = torch.zeros(2, V)
    proc.apply(logits)
    assert allowed(logits[1]) == list(range(V))


def test_complete_text_allows_only_eos_and_forbidden_tokens_end_the_request(proc, tokenizer, caplog):
    done, bad = [], []
    proc.update_state(update(added=[
        (0, params(guide={"choice": ["yes", "no"]}), [1], done),
        (1, params(regex="[0-9]+"), [1], bad),
    ], size=2))
    done.extend(tokenizer.encode("yes", add_special_tokens=False))
    bad.extend(tokenizer.encode("x", add_special_tokens=False))  # as if another stage picked it
    logits = torch.zeros(2, V)
    with caplog.at_level(logging.ERROR, logger="guide.integrations.vllm"):
        proc.apply(logits)
    assert allowed(logits[0]) == [EOS]
    assert allowed(logits[1]) == [EOS]
    assert "not allowed by the request's constraint" in caplog.text


def test_requests_with_the_same_spec_share_one_compiled_guide(proc, monkeypatch):
    pattern = "[a-c]{2}-shared"
    calls = []
    original = guide.grammars.regex.Regex._compile

    def counting(self, vocab):
        calls.append(self.key)
        return original(self, vocab)

    monkeypatch.setattr(guide.grammars.regex.Regex, "_compile", counting)
    monkeypatch.setattr(COMPILE_CACHE, "disk", False)  # count real compiles, not disk-cache loads
    COMPILE_CACHE.clear()
    plugin._build_spec.cache_clear()
    # Two spellings of one spec: the flat server form and the full offline form.
    proc.update_state(update(added=[
        (0, params(regex=pattern), [1], []),
        (1, params(guide={"regex": pattern}), [1], []),
        (2, params(guide=json.dumps({"regex": pattern})), [1], []),
    ], size=3))
    assert parse_request({"regex": pattern}) is parse_request({"guide": {"regex": pattern}})
    assert calls == ["regex:" + pattern]
    logits = torch.zeros(3, V)
    proc.apply(logits)
    assert allowed(logits[0]) == allowed(logits[1]) == allowed(logits[2])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"guide": {"xml": "<a/>"}}, "unknown constraint kind 'xml'"),
        ({"guide": json.dumps({"grammar": "x"})}, "unknown constraint kind 'grammar'"),
        ({"json_shema": "{}"}, "unknown constraint kind 'json_shema' in the request's extra args; did you mean 'json_schema'?"),
        ({"guide_xml": "<a/>"}, "unknown constraint kind 'guide_xml'"),
        ({"json_schema": '{"type": "frob"}'}, "invalid json_schema: malformed schema at /type"),
        ({"json_schema": "{not json"}, "json_schema is not valid JSON"),
        ({"json_schema": json.dumps({"type": "string", "pattern": "a" * 70_000})}, "more than the limit of 65536"),
        ({"regex": "(ab"}, "invalid regex"),
        ({"regex": "(a|b)*a(a|b){24}"}, "invalid regex: the byte automaton exceeds 50000 states"),
        ({"regex": "[^\\s\\S]"}, "matches no string at all"),
        ({"json_schema": "[" * 30_000 + "]" * 30_000}, "nested too deeply"),
        ({"lark": "start: undefined_rule"}, "invalid lark"),
        ({"regex": 5}, "regex must be a string"),
        ({"guide": "{oops"}, "is not valid JSON"),
        ({"guide": {"regex": "a", "lark": "start: \"a\""}}, "exactly one constraint kind"),
        ({"guide": {"regex": "a"}, "regex": "b"}, "not both"),
        ({"lark_start": "s"}, "without a constraint"),
        ({"guide": {"regex": "a", "start": "s"}}, "only applies to lark"),
        ({"guide": {"regex": "a", "allow_text": False}}, "only applies to tools"),
        ({"guide": {"regex": "a", "max_reasoning_tokens": 8}}, "needs 'reason': true"),
        ({"guide": {"regex": "a", "reason": True, "max_reasoning_tokens": 0}}, "positive integer"),
        ({"regex": "a", "reason": "maybe"}, "reason must be true or false"),
        ({"tools": '{"name": "f"}'}, "tools must be a list"),
        ({"tools": json.dumps([{"name": "f"}, {"name": "f"}])}, "invalid tools"),
    ],
)
def test_validate_params_rejects_bad_requests_with_a_clear_message(extra, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        GuideVLLMLogitsProcessor.validate_params(SamplingParams(extra_args=extra))


def test_validate_params_accepts_good_and_unrelated_requests():
    GuideVLLMLogitsProcessor.validate_params(SamplingParams())
    GuideVLLMLogitsProcessor.validate_params(SamplingParams(extra_args={"other_plugin": 1, "target_token": 5}))
    GuideVLLMLogitsProcessor.validate_params(SamplingParams(extra_args={"lark": 'start: "a"+', "lark_start": "start"}))
    with pytest.raises(ValueError, match="min_tokens"):
        GuideVLLMLogitsProcessor.validate_params(SamplingParams(min_tokens=3, extra_args={"regex": "a+"}))


def v2_states(slots=4, length=32):
    all_ids = torch.zeros(slots, length, dtype=torch.int32)
    prompt_len = np.zeros(slots, dtype=np.int32)
    total_len = torch.zeros(slots, dtype=torch.int32)
    states = SimpleNamespace(
        device=torch.device("cpu"), max_num_reqs=slots, vocab_size=V,
        all_token_ids=SimpleNamespace(gpu=all_ids), prompt_len=SimpleNamespace(np=prompt_len),
        total_len=SimpleNamespace(gpu=total_len),
    )
    return states, all_ids, prompt_len, total_len


def test_v2_speculative_rows_see_their_drafts(vllm_config, vocab, tokenizer):
    """Under spec decode a request owns one row per draft; row k is masked after drafts 1..k."""
    states, all_ids, prompt_len, total_len = v2_states()
    proc = GuideVLLMLogitsProcessor(vllm_config, states)
    spec = guide.regex("[0-9]{3}-[a-z]{2}")
    assert proc.add_request(0, params(regex="[0-9]{3}-[a-z]{2}"))
    assert not proc.add_request(2, params())
    committed = tokenizer.encode("1", add_special_tokens=False)
    drafts = tokenizer.encode("2", add_special_tokens=False) + tokenizer.encode("x", add_special_tokens=False)
    all_ids[0, : 2 + len(committed)] = torch.tensor([1, 5, *committed])
    prompt_len[0], total_len[0] = 2, 2 + len(committed)
    # Rows: slot 2 (one row), then slot 0 with the last committed token and two drafts.
    ctx = SimpleNamespace(
        expanded_idx_mapping=torch.tensor([2, 0, 0, 0]), idx_mapping_np=np.array([2, 0]),
        expanded_local_pos=torch.tensor([0, 0, 1, 2]),
        input_ids=torch.tensor([9, committed[-1], *drafts]),
    )
    logits = torch.zeros(4, V)
    proc.apply(logits, ctx)
    assert allowed(logits[0]) == list(range(V))
    assert allowed(logits[1]) == reference(spec, vocab, committed)
    assert allowed(logits[2]) == reference(spec, vocab, committed + drafts[:1])
    assert allowed(logits[3]) == [EOS]  # "x" breaks the pattern: that draft gets rejected
    # The drafts did not advance the request's own matcher: the next step starts from "1".
    ctx = SimpleNamespace(expanded_idx_mapping=torch.tensor([0]), idx_mapping_np=np.array([0]))
    logits = torch.zeros(1, V)
    proc.apply(logits, ctx)
    assert allowed(logits[0]) == reference(spec, vocab, committed)


def test_v2_path_maps_rows_to_slots_and_reads_committed_tokens(vllm_config, vocab, tokenizer):
    """Model Runner V2 needs a GPU; here its request state is stood in by plain CPU tensors."""
    slots, length = 4, 32
    all_ids = torch.zeros(slots, length, dtype=torch.int32)
    prompt_len = np.zeros(slots, dtype=np.int32)
    total_len = torch.zeros(slots, dtype=torch.int32)
    states = SimpleNamespace(
        device=torch.device("cpu"), max_num_reqs=slots, vocab_size=V,
        all_token_ids=SimpleNamespace(gpu=all_ids), prompt_len=SimpleNamespace(np=prompt_len),
        total_len=SimpleNamespace(gpu=total_len),
    )
    proc = GuideVLLMLogitsProcessor(vllm_config, states)
    assert proc.add_request(3, params(regex="[0-9]{3}-[a-z]{2}")) is True
    assert proc.add_request(1, params()) is False
    prompt = [1, 5, 9]
    generated = tokenizer.encode("42", add_special_tokens=False)
    all_ids[3, : len(prompt) + len(generated)] = torch.tensor(prompt + generated)
    prompt_len[3] = len(prompt)
    total_len[3] = len(prompt) + len(generated)
    proc.apply_staged_writes()
    ctx = SimpleNamespace(expanded_idx_mapping=torch.tensor([1, 3]), idx_mapping_np=np.array([1, 3]))
    logits = torch.zeros(2, V)
    proc.apply(logits, ctx)
    assert allowed(logits[0]) == list(range(V))
    assert allowed(logits[1]) == reference(guide.regex("[0-9]{3}-[a-z]{2}"), vocab, generated)


def test_engine_side_failures_end_only_that_request(proc, monkeypatch, caplog):
    """A failure inside the engine loop would stop every request; it ends just the one (EOS only)."""

    def broken(self, vocab):
        raise guide.EmptyLanguageError("no token sequence spells this")

    monkeypatch.setattr(guide.grammars.regex.Regex, "_compile", broken)
    monkeypatch.setattr(COMPILE_CACHE, "disk", False)
    COMPILE_CACHE.clear()
    with caplog.at_level(logging.ERROR, logger="guide.integrations.vllm"):
        proc.update_state(update(added=[
            (0, params(regex="[0-9]+-never-compiles"), [1], []),
            (1, params(), [1], []),
        ], size=2))
    assert "no token sequence spells this" in caplog.text
    logits = torch.zeros(2, V)
    proc.apply(logits)
    assert allowed(logits[0]) == [EOS]
    assert allowed(logits[1]) == list(range(V))


TOOLS = [
    {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}},
    {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}},
]


def _accepts(spec, vocab, tokenizer, text: str) -> bool:
    matcher = spec.compile(vocab).matcher()
    ids = tokenizer.encode(text, add_special_tokens=False)
    return all(t in matcher.allowed_tokens() and matcher.advance(t) for t in ids) and matcher.is_accepting()


def test_tools_kind_over_flat_xargs(vocab, tokenizer):
    """Issue 12's tool calls through the plugin: names from the list only, arguments per schema."""
    spec = parse_request({"tools": json.dumps(TOOLS), "tools_allow_text": "false"})
    assert spec is parse_request({"guide": {"tools": TOOLS, "allow_text": False}})
    call = '{"tool_calls": [{"name": "add", "arguments": {"a": 6, "b": 7}}]}'
    assert _accepts(spec, vocab, tokenizer, call)
    assert not _accepts(spec, vocab, tokenizer, call.replace('"add"', '"mul"'))
    assert not _accepts(spec, vocab, tokenizer, call.replace("7", '"seven"'))
    assert not _accepts(spec, vocab, tokenizer, "Forty-two.")
    assert _accepts(parse_request({"tools": json.dumps(TOOLS)}), vocab, tokenizer, "Forty-two.")


def test_reason_option_thinks_first_then_holds_the_constraint(vocab, tokenizer):
    spec = parse_request({"regex": "[0-9]+", "reason": "true", "max_reasoning_tokens": "8"})
    assert _accepts(spec, vocab, tokenizer, "<think>six times seven</think>42")
    assert not _accepts(spec, vocab, tokenizer, "<think>six times seven</think>forty-two")
    assert not _accepts(spec, vocab, tokenizer, "42")  # the reasoning block comes first
