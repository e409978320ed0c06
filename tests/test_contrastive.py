"""Contrastive decoding (CD, USCD, SCD): exact checks on toy LMs with known tables, plus a tiny
random Llama and its truncated amateur (same weights, fewer layers) for the real KV-cache path."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

import guide
from guide.errors import GuideDeadEnd, TokenizerError
from guide.samplers.contrastive import (
    cd_scores,
    contrastive_decode,
    contrastive_generate,
    mu_to_sum_sq,
    scd_decode,
    uncertainty,
    uscd_decode,
)
from guide.samplers.models import TableLM, check_same_tokenizer, hashed_table, truncated_amateur
from guide.testing import toy_vocab
from guide.vocab import Vocabulary

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py




# ---------------------------------------------------------------- the formula


def _reference_cd(ze, za, alpha, lam, tau):
    """CD written out with numpy, straight from the paper's definition."""
    pe = np.exp(ze - ze.max())
    pe /= pe.sum()
    pa = np.exp(za / tau - (za / tau).max())
    pa /= pa.sum()
    head = pe >= alpha * pe.max()
    score = np.log(pe) - lam * np.maximum(np.log(pa), -1e4)
    return np.where(head, score, -np.inf)


@pytest.mark.parametrize(
    "alpha,lam,tau", [(0.1, 1.0, 1.0), (0.3, 0.8, 0.5), (1.0, 1.0, 1.0), (0.05, 0.0, 2.0)]
)
def test_cd_scores_equal_the_formula(alpha, lam, tau):
    rng = np.random.default_rng(0)
    ze, za = rng.normal(size=(2, 5, 11)) * 3
    got = cd_scores(
        torch.tensor(ze), torch.tensor(za), alpha=alpha, lam=lam, amateur_temperature=tau
    ).numpy()
    for row in range(5):
        want = _reference_cd(ze[row], za[row], alpha, lam, tau)
        assert np.array_equal(np.isinf(got[row]), np.isinf(want))
        np.testing.assert_allclose(
            got[row][np.isfinite(want)], want[np.isfinite(want)], rtol=1e-5, atol=1e-4
        )


def test_cd_special_cases():
    ze = torch.tensor([2.0, 1.9, 0.0, -5.0])
    za = torch.tensor([3.0, -1.0, 0.0, 0.0])
    # alpha = 1: only the expert's argmax is plausible.
    assert torch.isfinite(cd_scores(ze, za, alpha=1.0)).tolist() == [True, False, False, False]
    # lam = 0: the expert's own ranking.
    assert int(cd_scores(ze, za, lam=0.0).argmax()) == 0
    # the contrast prefers the token the amateur dislikes.
    assert int(cd_scores(ze, za).argmax()) == 1
    # identical expert and amateur at lam = 1: uniform over the head.
    s = cd_scores(ze, ze)
    finite = s[torch.isfinite(s)]
    assert torch.allclose(finite, finite[0].expand_as(finite), atol=1e-5)
    # logit mode: (1 + beta) z_E - beta z_A on the head of z_E.
    s = cd_scores(ze, za, mode="logit", beta=0.5, alpha=0.1)
    head = ze >= ze.max() + math.log(0.1)
    assert torch.allclose(s[head], (1.5 * ze - 0.5 * za)[head])
    assert torch.isinf(s[~head]).all()


def test_the_head_is_taken_over_allowed_tokens():
    ze = torch.tensor([5.0, 0.0, -0.5, -9.0])
    za = torch.zeros(4)
    allowed = torch.tensor([False, True, True, True])
    s = cd_scores(ze, za, allowed=allowed)
    assert torch.isfinite(s).tolist() == [False, True, True, False]


def test_uncertainty_statistics():
    flat = torch.zeros(8)
    assert float(uncertainty(flat, "entropy")) == pytest.approx(3.0)
    assert float(uncertainty(flat, "top1")) == pytest.approx(1 - 1 / 8)
    assert mu_to_sum_sq(5e-3, 32000) == pytest.approx(0.8 + 1 / 32000)


# ---------------------------------------------------------------- toy LMs

SMALL = Vocabulary.from_bytes([b"a", b"b", b"c", b"<eos>"], eos_ids=[3])


def _pair(width_e=4, width_a=4, seed=1):
    return TableLM(hashed_table(width_e, seed), width_e), TableLM(
        hashed_table(width_a, seed + 100, 1.5), width_a
    )


def _cd_target(expert, amateur, prompt, n, **kw):
    """{(tokens, finished): probability} of CD sampling for n tokens, by enumeration."""
    out: dict = defaultdict(float)

    def walk(prefix, prob):
        if len(prefix) == n:
            out[(tuple(prefix), False)] += prob
            return
        ctx = tuple(prompt) + tuple(prefix)
        ze = torch.tensor(expert.table(ctx))[:4]
        za = torch.tensor(amateur.table(ctx))[:4]
        p = torch.softmax(cd_scores(ze, za, **kw).double(), -1)
        for t, pt in enumerate(p.tolist()):
            if pt == 0:
                continue
            if t == 3:
                out[(tuple(prefix), True)] += prob * pt
            else:
                walk(prefix + [t], prob * pt)

    walk([], 1.0)
    return dict(out)


class _NeedChoice(Exception):
    def __init__(self, options):
        self.options = options


class _ScriptedRandom:
    """Replays a script of branch choices and reports the options of the first unscripted one."""

    def __init__(self, script):
        self.script, self.pos, self.prob = script, 0, 1.0

    def _take(self, options):
        if self.pos == len(self.script):
            raise _NeedChoice(options)
        value, p = options[self.script[self.pos]]
        self.pos += 1
        self.prob *= p
        return value

    def choice(self, probs):
        return self._take([(i, p) for i, p in enumerate(probs.tolist()) if p > 0])

    def bernoulli(self, p):
        return self._take([(v, q) for v, q in ((True, p), (False, 1 - p)) if q > 0])


def _enumerate(run):
    """The exact output distribution of `run(rng)` over every path of its random choices."""
    dist: dict = defaultdict(float)
    stack = [[]]
    while stack:
        script = stack.pop()
        rng = _ScriptedRandom(script)
        try:
            out = run(rng)
        except _NeedChoice as need:
            stack.extend(script + [j] for j in range(len(need.options)))
            continue
        dist[(tuple(out.token_ids[0]), out.finished[0])] += rng.prob
    return dict(dist)


@pytest.mark.parametrize(
    "gamma,kw", [(1, {}), (2, {"alpha": 0.05, "amateur_temperature": 0.5}), (3, {"lam": 0.5})]
)
def test_scd_output_distribution_equals_cd_target_by_enumeration(gamma, kw):
    expert, amateur = _pair()
    prompt, n = [0], 3
    target = _cd_target(expert, amateur, prompt, n, **kw)
    got = _enumerate(
        lambda rng: scd_decode(
            expert,
            amateur,
            prompt,
            gamma=gamma,
            max_new_tokens=n,
            eos_ids=[3],
            do_sample=True,
            rng=rng,
            **kw,
        )
    )
    assert set(got) == set(target)
    for key, p in target.items():
        assert got[key] == pytest.approx(p, abs=1e-9), key
    assert sum(got.values()) == pytest.approx(1.0)


def test_cd_sampling_distribution_equals_cd_target_by_enumeration():
    expert, amateur = _pair()
    target = _cd_target(expert, amateur, [1], 3)
    got = _enumerate(
        lambda rng: contrastive_decode(
            expert, amateur, [[1]], max_new_tokens=3, eos_ids=[3], do_sample=True, rng=rng
        )
    )
    assert got == pytest.approx(target, abs=1e-9)


def test_greedy_scd_is_token_identical_to_greedy_cd_with_fewer_expert_calls():
    vocab = toy_vocab()
    w = vocab.size
    expert = TableLM(hashed_table(w + 5, 7), w + 5)  # wider logits than the tokenizer, like Qwen
    amateur = TableLM(hashed_table(w + 1, 7, 1.6), w + 1)
    for prompt in ([5], [1, 2, 3]):
        cd = contrastive_decode(expert, amateur, [prompt], vocab=vocab, max_new_tokens=12)
        for gamma in (1, 3, 6):
            scd = scd_decode(expert, amateur, prompt, gamma=gamma, vocab=vocab, max_new_tokens=12)
            assert scd.token_ids == cd.token_ids
            assert scd.expert_calls <= cd.expert_calls
            assert all(t < w for t in scd.token_ids[0])


def test_batched_cd_with_padding_equals_one_by_one():
    expert, amateur = _pair(6, 5, seed=3)
    prompts = [[0], [1, 2, 0, 1], [2, 2]]
    batch = contrastive_decode(expert, amateur, prompts, eos_ids=[3], max_new_tokens=6, pad_id=3)
    for i, p in enumerate(prompts):
        one = contrastive_decode(expert, amateur, [p], eos_ids=[3], max_new_tokens=6)
        assert one.token_ids[0] == batch.token_ids[i] and one.finished[0] == batch.finished[i]


def test_uscd_gate_endpoints_and_record():
    expert, amateur = _pair(seed=4)
    prompts, lame = [[0, 1]], [[1]]
    kw = {"eos_ids": [3], "max_new_tokens": 5}
    never = uscd_decode(expert, [p for p in prompts], lame, threshold=math.inf, **kw)
    greedy = contrastive_decode(
        expert, amateur, prompts, lam=0.0, alpha=1.0, **kw
    )  # = expert argmax
    assert never.token_ids == greedy.token_ids
    assert never.contrast_fraction == 0.0
    always = uscd_decode(expert, prompts, lame, threshold=0.0, **kw)
    cd = contrastive_decode(expert, expert, prompts, amateur_prompts=lame, **kw)
    assert always.token_ids == cd.token_ids
    assert always.contrast_fraction == 1.0
    some = uscd_decode(expert, prompts, lame, threshold=1.0, **kw)
    assert len(some.contrast_applied[0]) == len(some.token_ids[0]) + some.finished[0]


def test_every_method_stays_inside_a_grammar():
    vocab = toy_vocab([b"ab", b"ba", b"cc"])
    w = vocab.size
    expert, amateur = TableLM(hashed_table(w, 11), w), TableLM(hashed_table(w, 12), w)
    pattern = r"(ab|c)+[0-9]"
    constraint = guide.regex(pattern)
    outs = [
        contrastive_decode(
            expert, amateur, [[65], [66, 67]], constraint=constraint, vocab=vocab, max_new_tokens=20
        ),
        contrastive_decode(
            expert,
            amateur,
            [[65]],
            constraint=constraint,
            vocab=vocab,
            max_new_tokens=20,
            do_sample=True,
            seed=0,
            uscd_threshold=1.0,
        ),
        scd_decode(
            expert, amateur, [65], constraint=constraint, vocab=vocab, max_new_tokens=20, gamma=3
        ),
        scd_decode(
            expert,
            amateur,
            [65],
            constraint=constraint,
            vocab=vocab,
            max_new_tokens=20,
            gamma=3,
            do_sample=True,
            seed=1,
        ),
    ]
    for out in outs:
        for tokens, finished in zip(out.token_ids, out.finished):
            assert finished
            assert re.fullmatch(pattern, vocab.decode(tokens).decode()), vocab.decode(tokens)


def test_dead_end_is_an_error():
    # The amateur's logits stop at id 100, so "z" (id 122) is outside the shared vocabulary.
    vocab = toy_vocab()
    expert, amateur = (
        TableLM(hashed_table(vocab.size, 1), vocab.size),
        TableLM(hashed_table(100, 2), 100),
    )
    with pytest.raises(GuideDeadEnd, match="no token is allowed"):
        contrastive_decode(expert, amateur, [[1]], constraint=guide.regex("z"), vocab=vocab)
    with pytest.raises(GuideDeadEnd):
        scd_decode(expert, amateur, [1], constraint=guide.regex("z"), vocab=vocab)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"lam": -1.0}, "lam"),
        ({"amateur_temperature": 0.0}, "amateur_temperature"),
        ({"mode": "x"}, "mode"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"uscd_threshold": -0.1}, "uscd_threshold"),
    ],
)
def test_bad_arguments_are_value_errors(kw, match):
    expert, amateur = _pair()
    with pytest.raises(ValueError, match=match):
        contrastive_decode(expert, amateur, [[0]], eos_ids=[3], **kw)


@pytest.mark.parametrize("gamma", [0, -2, 1.5, True])
def test_gamma_below_one_is_an_error(gamma):
    expert, amateur = _pair()
    with pytest.raises(ValueError, match="gamma"):
        scd_decode(expert, amateur, [0], gamma=gamma, eos_ids=[3])


def _word_tokenizer(words):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token=words[0]))
    backend.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", unk_token=words[0])


def test_different_tokenizers_are_a_clear_error():
    a = _word_tokenizer(["<unk>", "</s>", "x", "y"])
    b = _word_tokenizer(["<unk>", "</s>", "y", "x"])
    check_same_tokenizer(a, _word_tokenizer(["<unk>", "</s>", "x", "y"]))
    with pytest.raises(TokenizerError, match="one tokenizer"):
        check_same_tokenizer(a, b)
    expert, amateur = _pair()
    with pytest.raises(TokenizerError):
        contrastive_generate(expert, amateur, a, "x y", amateur_tokenizer=b, chat=False)


# ---------------------------------------------------------------- a real (tiny, random) Llama


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
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


def test_truncated_amateur_shares_weights(tiny_llama):
    full = truncated_amateur(tiny_llama, 4)
    ids = torch.tensor([[1, 5, 9, 14]])
    with torch.inference_mode():
        assert torch.allclose(full(ids).logits, tiny_llama(ids).logits, atol=1e-6)
    small = truncated_amateur(tiny_llama, 1)
    assert small.config.num_hidden_layers == 1 and tiny_llama.config.num_hidden_layers == 4
    assert small.lm_head.weight.data_ptr() == tiny_llama.lm_head.weight.data_ptr()
    with pytest.raises(ValueError):
        truncated_amateur(tiny_llama, 0)
    with pytest.raises(ValueError):
        truncated_amateur(tiny_llama, 5)


def test_real_pair_greedy_scd_equals_cd_and_batching_matches(tiny_llama):
    small = truncated_amateur(tiny_llama, 1)
    prompts = [[1, 7, 8, 9, 10], [1, 20], [1, 33, 34]]
    batch = contrastive_decode(tiny_llama, small, prompts, eos_ids=[2], max_new_tokens=8)
    for i, p in enumerate(prompts):
        one = contrastive_decode(tiny_llama, small, [p], eos_ids=[2], max_new_tokens=8)
        assert one.token_ids[0] == batch.token_ids[i]
        scd = scd_decode(tiny_llama, small, p, gamma=3, eos_ids=[2], max_new_tokens=8)
        assert scd.token_ids[0] == one.token_ids[0]


# ---------------------------------------------------------------- the embedded pair (text API)


@pytest.mark.model
def test_text_api_on_the_embedded_pair_with_a_grammar():
    """The embedded SmolLM2 as expert/large and its first 2 layers as amateur/small (same weights,
    truncated in memory): every method's text matches the regex; greedy SCD equals greedy CD."""
    from guide.samplers.switching import ead_generate

    model, tok = guide.load_default_model()
    small = truncated_amateur(model, 2)
    pattern = r"[0-9]{1,3}( apples)?"
    prompts = ["How many apples are in a crate?", "Pick a number."]
    kw = {"max_new_tokens": 8}
    cd = contrastive_generate(
        model, small, tok, prompts, guide.regex(pattern), amateur_tokenizer=tok, **kw
    )
    scd = contrastive_generate(
        model, small, tok, prompts, guide.regex(pattern), speculative=True, gamma=2, **kw
    )
    ead = ead_generate(
        small, model, tok, prompts, guide.regex(pattern), threshold=1.0, small_tokenizer=tok, **kw
    )
    assert scd.token_ids == cd.token_ids
    for out in (cd, scd, ead):
        for text, finished in zip(out.texts, out.finished):
            assert finished and re.fullmatch(pattern, text), text


# ----------------------------------------------------------------------------- USCD's lame prompt

DATA = Path(__file__).parent / "data"


def test_lame_prompt_removes_exactly_the_demonstrations():
    """Golden file: doctest blocks (with continuations and outputs, also one closing the
    docstring), `call(...) == result` lines and their "Examples:" headers go; nothing else."""
    from guide.samplers.lame import lame_prompt

    prompt = (DATA / "humaneval_like_prompt.py.txt").read_text()
    assert lame_prompt(prompt) == (DATA / "humaneval_like_prompt.lame.txt").read_text()


def test_lame_prompt_without_demonstrations_is_an_error():
    from guide.errors import SamplerConfigError
    from guide.samplers.lame import lame_prompt

    with pytest.raises(SamplerConfigError, match="no demonstrations"):
        lame_prompt("Write a function that adds two numbers.")
    assert lame_prompt("plain", strict=False) == "plain"
