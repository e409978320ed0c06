"""Entropy-adaptive decoding (EAD): endpoint identities on toy LMs with known tables, the switching
rule on synthetic entropy streams, and KV catch-up against fresh forwards on a tiny random Llama
and its truncated small model (same weights, fewer layers)."""

from __future__ import annotations

import math
import re

import pytest
import torch

import guide
from guide.errors import TokenizerError
from guide.samplers.models import KVModel, TableLM, hashed_table, truncated_amateur
from guide.samplers.switching import SwitchPolicy, ead_decode, ead_generate
from guide.testing import toy_vocab


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- the switching rule


def _run_policy(stream, **kw):
    """Feed a synthetic entropy stream (the entropy of whichever model is active) and return who
    produced each token."""
    policy = SwitchPolicy(**kw)
    who = []
    for h in stream:
        src = "L" if policy.on_large else "S"
        who.append(src)
        policy.observe(h, src == "L")
    return "".join(who)


def test_rolling_window_and_hysteresis():
    # window 2, up at 1.0: the mean of (0.5, 2.0) = 1.25 switches after the 2nd token; (2.0, 0) has
    # mean 1.0, not below 1.0, so L stays one more token; (0, 0) switches back.
    assert (
        _run_policy([0.5, 2.0, 0, 0, 0, 0, 0], threshold=1.0, window=2, min_large_tokens=0)
        == "SSLLSSS"
    )
    # min stay of 3 large tokens keeps L despite the low window.
    assert (
        _run_policy([0.5, 2.0, 0, 0, 0, 0, 0], threshold=1.0, window=2, min_large_tokens=3)
        == "SSLLLSS"
    )
    # separate down threshold: stay on L while the mean is >= 0.5.
    assert (
        _run_policy(
            [3, 0.8, 0.8, 0.2, 0.2, 0.2],
            threshold=1.0,
            threshold_down=0.5,
            window=2,
            min_large_tokens=0,
        )
        == "SLLLLS"
    )
    # default window 5: one spike of 6 bits keeps the mean at 1.2 >= 1 for five windows.
    assert (
        _run_policy([0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0], threshold=1.0, min_large_tokens=0)
        == "SSSSSLLLLLS"
    )


def test_endpoints_of_the_rule():
    assert set(_run_policy([5.0] * 10, threshold=math.inf)) == {"S"}
    assert (
        _run_policy([0.0] * 6, threshold=0.0) == "SLLLLL"
    )  # "next" timing: the first token is small's
    policy = SwitchPolicy(0.0)
    assert policy.wants_large_now(0.0)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"threshold": -0.5}, "threshold"),
        ({"threshold": 1.0, "threshold_down": -1.0}, "threshold_down"),
        ({"threshold": float("nan")}, "threshold"),
        ({"threshold": 1.0, "window": 0}, "window"),
        ({"threshold": 1.0, "min_large_tokens": -1}, "min_large_tokens"),
    ],
)
def test_bad_policy_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        SwitchPolicy(**kw)


# ---------------------------------------------------------------- toy LMs with known tables

VOCAB = toy_vocab([b"ab", b"ba", b"cc"])
EOS = next(iter(VOCAB.eos_ids))


def _toy_pair():
    w = VOCAB.size
    # The small model's table is flatter (higher entropy) and wider than the tokenizer.
    return TableLM(hashed_table(w + 3, 21, 0.7), w + 3), TableLM(hashed_table(w, 22, 3.0), w)


def _table_greedy(lm, prompt, n):
    out = []
    for _ in range(n):
        t = int(torch.tensor(lm.table(tuple(prompt + out))[: VOCAB.size]).argmax())
        if t == EOS:
            break
        out.append(t)
    return out


@pytest.mark.parametrize("prompt", [[65], [1, 2, 3]])
def test_threshold_endpoints_reproduce_each_model_exactly(prompt):
    small, large = _toy_pair()
    kw = {"vocab": VOCAB, "max_new_tokens": 10}
    never = ead_decode(small, large, [prompt], threshold=math.inf, **kw)
    assert never.token_ids[0] == _table_greedy(small, prompt, 10)
    assert never.large_fraction == 0.0 and never.large_calls == 0
    always = ead_decode(small, large, [prompt], threshold=0.0, switch_timing="current", **kw)
    assert always.token_ids[0] == _table_greedy(large, prompt, 10)
    assert always.large_fraction == 1.0
    nxt = ead_decode(small, large, [prompt], threshold=0.0, switch_timing="next", **kw)
    first = _table_greedy(small, prompt, 1)
    assert nxt.token_ids[0] == first + _table_greedy(large, prompt + first, 9)
    assert nxt.sources[0] == ["S"] + ["L"] * 9


def test_mid_threshold_switches_and_each_token_replays_from_its_model():
    small, large = _toy_pair()
    prompts = [[65], [1, 2, 3], [7]]
    batch = ead_decode(
        small,
        large,
        prompts,
        vocab=VOCAB,
        threshold=7.0,
        min_large_tokens=2,
        max_new_tokens=16,
        pad_id=0,
    )
    seen = set()
    for i, prompt in enumerate(prompts):
        one = ead_decode(
            small,
            large,
            [prompt],
            vocab=VOCAB,
            threshold=7.0,
            min_large_tokens=2,
            max_new_tokens=16,
        )
        assert one.token_ids[0] == batch.token_ids[i] and one.sources[0] == batch.sources[i]
        for j, (t, src) in enumerate(zip(one.token_ids[0], one.sources[0])):
            lm = large if src == "L" else small
            assert t == _table_greedy(lm, prompt + one.token_ids[0][:j], 1)[0]
        seen.update(one.sources[0])
    assert seen == {"S", "L"}, "the threshold should make both models produce tokens"
    assert 0 < batch.large_fraction < 1
    assert batch.relative_cost(1, 4) == pytest.approx(
        batch.large_fraction + (1 - batch.large_fraction) / 4
    )


def test_output_stays_inside_a_grammar():
    small, large = _toy_pair()
    pattern = r"(ab|c)+[0-9]"
    for kw in (
        {},
        {"do_sample": True, "seed": 3, "temperature": 1.5},
        {"switch_timing": "current"},
    ):
        out = ead_decode(
            small,
            large,
            [[65], [66]],
            vocab=VOCAB,
            constraint=guide.regex(pattern),
            threshold=7.0,
            max_new_tokens=30,
            **kw,
        )
        for tokens, finished in zip(out.token_ids, out.finished):
            assert finished and re.fullmatch(pattern, VOCAB.decode(tokens).decode())


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"threshold": -1.0}, "threshold"),
        ({"switch_timing": "later"}, "switch_timing"),
        ({"temperature": 0.0}, "temperature"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_bad_arguments(kw, match):
    small, large = _toy_pair()
    with pytest.raises(ValueError, match=match):
        ead_decode(small, large, [[1]], vocab=VOCAB, **kw)


def _word_tokenizer(words):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token=words[0]))
    backend.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", unk_token=words[0])


def test_different_tokenizers_are_a_clear_error():
    small, large = _toy_pair()
    a = _word_tokenizer(["<unk>", "</s>", "x", "y"])
    b = _word_tokenizer(["<unk>", "</s>", "x", "z"])
    with pytest.raises(TokenizerError, match="one tokenizer"):
        ead_generate(small, large, a, "x y", small_tokenizer=b, chat=False)


# ---------------------------------------------------------------- a real (tiny, random) Llama


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        eos_token_id=2,
        pad_token_id=0,
        bos_token_id=1,
    )
    return LlamaForCausalLM(config).eval()


def _fresh_last_logits(model, tokens):
    with torch.inference_mode():
        return model(input_ids=torch.tensor([tokens])).logits[0, -1].float()


def test_kv_catch_up_equals_a_fresh_forward(tiny_llama):
    """Prefill a left-padded batch, step one token, then catch up on four in one chunk: the logits
    at every position match a fresh, unpadded forward over the whole prefix (1e-4)."""
    prompts = [[1, 5, 6, 7, 8, 9], [1, 40], [1, 77, 78]]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    kv = KVModel(tiny_llama)
    kv.feed(ids, mask)
    step = torch.tensor([[11], [12], [13]])
    kv.feed(step)
    chunk = torch.tensor([[20, 21, 22, 23], [30, 31, 32, 33], [40, 41, 42, 43]])
    got = kv.feed(chunk)
    for i, p in enumerate(prompts):
        for j in range(4):
            full = p + [int(step[i, 0])] + chunk[i, : j + 1].tolist()
            assert torch.allclose(got[i, j], _fresh_last_logits(tiny_llama, full), atol=1e-4)
    # Cropping back and re-feeding gives the same logits again (speculative rejection path).
    kv.crop(kv.length - 2)
    again = kv.feed(chunk[:, 2:])
    assert torch.allclose(again, got[:, 2:], atol=1e-4)


def test_real_pair_endpoints_batching_and_replay(tiny_llama):
    small = truncated_amateur(tiny_llama, 1)
    prompts = [[1, 5, 6, 7], [1, 40], [1, 77, 78, 79, 80]]
    kw = {"eos_ids": [2], "max_new_tokens": 8}
    with torch.inference_mode():
        padded = torch.tensor([[0] * (5 - len(p)) + p for p in prompts])
        amask = (
            torch.arange(5)[None, :] >= torch.tensor([5 - len(p) for p in prompts])[:, None]
        ).long()
        hf = tiny_llama.generate(
            input_ids=padded,
            attention_mask=amask,
            max_new_tokens=8,
            do_sample=False,
            eos_token_id=2,
            pad_token_id=0,
        )[:, 5:].tolist()
    always = ead_decode(small, tiny_llama, prompts, threshold=0.0, switch_timing="current", **kw)
    for i in range(3):
        row = hf[i][: hf[i].index(2)] if 2 in hf[i] else hf[i]
        assert always.token_ids[i] == row
    mid = ead_decode(small, tiny_llama, prompts, threshold=8.05, min_large_tokens=1, **kw)
    assert {s for row in mid.sources for s in row} == {"S", "L"}
    for i, p in enumerate(prompts):
        one = ead_decode(small, tiny_llama, [p], threshold=8.05, min_large_tokens=1, **kw)
        assert one.token_ids[0] == mid.token_ids[i]
        for j, (t, src) in enumerate(zip(one.token_ids[0], one.sources[0])):
            model = tiny_llama if src == "L" else small
            assert t == int(_fresh_last_logits(model, p + one.token_ids[0][:j]).argmax())
