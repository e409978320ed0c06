"""Safety nets: thread safety of shared compiled constraints, disk-cache corruption, no network."""

from __future__ import annotations

import random
import socket
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

import guide
from guide.cache import load_pickle, store_pickle
from guide.constraint import COMPILE_CACHE
from guide.testing import random_walk, toy_vocab

DATE = r"(19|20)\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"


def _walks(compiled, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(20):
        tokens, _ = random_walk(compiled.matcher(), rng, max_tokens=30)
        out.append(compiled.vocab.decode(tokens))
    return out


def test_one_compiled_constraint_shared_by_8_threads():
    vocab = toy_vocab([b"20", b"19", b"-0", b"-1", b"12", b"31"])
    compiled = guide.regex(DATE).compile(vocab)
    sequential = [_walks(compiled, seed) for seed in range(8)]
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(lambda seed: _walks(compiled, seed), range(8)))
    assert concurrent == sequential


def test_concurrent_compiles_of_one_spec_build_it_once(tmp_path, monkeypatch):
    monkeypatch.setenv("GUIDE_CACHE_DIR", str(tmp_path))
    COMPILE_CACHE.clear()
    vocab = toy_vocab([b"ab"])
    spec = guide.regex(r"[a-c]{1,9}x")
    barrier = threading.Barrier(8)

    def compile_it(_):
        barrier.wait()
        return spec.compile(vocab)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(compile_it, range(8)))
    assert all(r is results[0] for r in results)


@pytest.mark.model
def test_generate_from_8_threads_equals_sequential(smollm2_tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, eos_token_id=2, pad_token_id=2)
    model = LlamaForCausalLM(config).eval()
    spec = guide.regex(DATE)
    prompts = [f"prompt number {i}" for i in range(8)]

    def run(prompt: str) -> str:
        return guide.generate(model, smollm2_tokenizer, prompt, spec, max_new_tokens=16, chat=False)

    sequential = [run(p) for p in prompts]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(run, prompts)) == sequential


@pytest.mark.parametrize("damage", [b"", b"garbage\x00\xff", "truncate"])
def test_corrupt_compiled_cache_file_is_rebuilt(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("GUIDE_CACHE_DIR", str(tmp_path))
    COMPILE_CACHE.clear()
    vocab = toy_vocab()
    first = guide.regex(r"q+r").compile(vocab)
    (path,) = (tmp_path / "compiled").iterdir()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else damage)
    COMPILE_CACHE.clear()
    again = guide.regex(r"q+r").compile(vocab)
    assert (again.masks == first.masks).all()
    assert load_pickle(path) is not None  # rewritten whole


def test_atomic_writes_survive_concurrent_writers(tmp_path):
    path = tmp_path / "x.pkl"
    payloads = [{"writer": i, "data": list(range(20_000))} for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: store_pickle(path, p), payloads))
    assert load_pickle(path) in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["x.pkl"]  # no temp files left behind


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted during a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.model
def test_model_path_runs_entirely_offline(no_network):
    model, tok = guide.load_default_model()
    text = guide.generate(model, tok, "Give a date.", guide.regex(DATE), max_new_tokens=16)
    assert text
    with pytest.raises(guide.ModelLoadError, match="never downloads"):
        guide.load_model("https://huggingface.co/HuggingFaceTB/SmolLM2-135M")


def test_disk_cache_is_pruned_to_its_budget(tmp_path):
    import os
    import time

    for i in range(6):
        store_pickle(tmp_path / f"{i}.pkl", b"x" * 10_000, max_folder_bytes=35_000)
        os.utime(tmp_path / f"{i}.pkl", (time.time() + i, time.time() + i))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "5.pkl" in names and len(names) <= 3
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 35_000


# ----------------------------------------------------------------------------- bounded work


def test_grammar_size_caps_are_clear_errors():
    words = " | ".join(f'"w{i}"' for i in range(300))
    with pytest.raises(guide.GrammarError, match="max_grammar_bytes=1,000"):
        guide.grammar(f"start: {words}", max_grammar_bytes=1_000)
    many = "\n".join(f'r{i}: "x{i}"' for i in range(60))
    text = "start: " + " | ".join(f"r{i}" for i in range(60)) + "\n" + many
    with pytest.raises(guide.GrammarError, match="max_rules=50"):
        guide.grammar(text, max_rules=50)
    assert guide.grammar(text).parses("x7")


def test_parse_depth_cap_stops_runaway_nesting():
    vocab = toy_vocab()
    compiled = guide.grammar('start: "(" start ")" | "x"', max_depth=40).compile(vocab)
    m = compiled.matcher()
    with pytest.raises(guide.GrammarError, match="max_depth=40"):
        for _ in range(100):
            assert m.advance(ord("("))
    assert len(m.stack) <= 40  # the refused token left the state as it was


def test_json_schema_caps_take_keywords():
    deep: dict = {"type": "integer"}
    for _ in range(10):
        deep = {"type": "array", "items": deep}
    guide.json_schema(deep)
    with pytest.raises(guide.GrammarError, match="max_depth=5"):
        guide.json_schema(deep, max_depth=5)
    wide = {"type": "object", "properties": {f"p{i}": {"enum": [i, str(i)]} for i in range(40)}}
    with pytest.raises(guide.GrammarError, match="max_rules=20"):
        guide.json_schema(wide, max_rules=20)


def _worst_mask_seconds(compiled, data: bytes) -> float:
    """Feed `data` byte by byte (single-byte tokens), timing every mask on the way."""
    import time

    m = compiled.matcher()
    worst = 0.0
    for b in data:
        t0 = time.perf_counter()
        m.allowed_tokens()
        worst = max(worst, time.perf_counter() - t0)
        assert m.advance(b), data[:20]
    return worst


@pytest.mark.parametrize(
    "name, data",
    [
        ("deep arrays", b"[" * 3000 + b"]" * 3000),
        ("deep objects", b'{"a":' * 1500 + b"1" + b"}" * 1500),
        ("long string", b'"' + b"ab\\n\\u00e9" * 3000 + b'"'),
        ("long number", b"-" + b"7" * 20_000 + b".5e-9"),
        ("wide array", b"[" + b"1," * 10_000 + b"1]"),
    ],
)
def test_no_json_input_makes_one_mask_slow(name, data):
    """The structural bound in practice: masks stay cheap at any depth or length (watchdog 0.5 s)."""
    from guide.grammars.cfg import builtin

    compiled = builtin("json").compile(toy_vocab([b"[[", b"]]", b'{"a":', b"77", b"ab"]))
    assert _worst_mask_seconds(compiled, data) < 0.5, name


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#"},
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        {"enum": [f"value number {i}" for i in range(20_000)]},
        {"type": "string", "pattern": "^(a+)+$"},
        {"type": "string", "pattern": "(x|xx)*y", "maxLength": 50},
        {"type": "array", "items": {"type": "integer"}, "minItems": 400, "maxItems": 2000},
        {"anyOf": [{"type": "object", "properties": {f"k{i}": {"type": "integer"}}, "required": [f"k{i}"]} for i in range(200)]},
    ],
    ids=["self-ref", "ref-cycle", "huge-enum", "redos-pattern", "redos-bounded", "long-array", "wide-anyOf"],
)
def test_pathological_schemas_end_within_the_compile_budget(schema):
    """A guide or a GuideError, never a hang or a crash: the grammar compile stops at its 10 s
    default budget; the schema translation before it is bounded by the size caps (< 2 s here)."""
    import time

    vocab = toy_vocab([b'"value', b" number", b"aa", b"xx"])
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            guide.json_schema(schema).compile(vocab)
    except guide.GuideError:
        pass
    assert time.perf_counter() - t0 < 12


@pytest.mark.model
def test_generate_calls_do_not_grow_memory(smollm2_tokenizer):
    """200 generate calls with one cached guide: RSS after the last 100 stays within 16 MiB of
    RSS after the first 100 (the processor keeps no per-call state alive). The benchmark
    benchmarks/bench_reliability.py makes 1,000."""
    import resource

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    def rss_mib() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, eos_token_id=2, pad_token_id=2)
    model = LlamaForCausalLM(config).eval()
    spec = guide.regex(DATE)
    for i in range(200):
        guide.generate(model, smollm2_tokenizer, f"prompt {i % 7}", spec, max_new_tokens=12, chat=False, allow_incomplete=True)
        if i == 99:
            after_100 = rss_mib()
    assert rss_mib() - after_100 < 16
