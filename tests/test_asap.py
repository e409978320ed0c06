"""ASAp and GCD on an exact toy LM: every target is computed here by enumeration, independently of
the sampler's own `enumerate` (ALGORITHMS.md section 1.8)."""

from __future__ import annotations

import math
import re
from collections import Counter

import pytest
from toy_lm import BOS, ToyLM, binary_chars_table, random_table, toy_vocabulary

import guide
from guide.errors import EmptyLanguageError, GuideDeadEnd, GuideError
from guide.samplers import GCD, ASAp, SamplerConfigError
from guide.samplers.asap import kl_divergence

BINARY = "000|1[01][01]"
BINARY_STRINGS = {"000", "100", "101", "110", "111"}
RICH = "000|1[01][01]|01"
RICH_STRINGS = BINARY_STRINGS | {"01"}


class Exact:
    """Ground truth by brute force over token sequences, from the toy table and a set of strings."""

    def __init__(self, vocab, table, strings: set[str], temperature: float = 1.0) -> None:
        self.vocab, self.table, self.strings, self.temperature = vocab, table, strings, temperature
        self.bos = vocab.tokens.index(BOS)
        self.eos = next(iter(vocab.eos_ids))
        self.text_ids = [i for i in range(vocab.size) if i not in vocab.special_ids]
        self.viable = {s[:i] for s in strings for i in range(len(s) + 1)}
        self.p: dict[tuple[int, ...], float] = {}
        self.efg: dict[tuple[int, ...], float] = {}
        self._walk((), 1.0)
        self.z = sum(self.p.values())
        self.q = {w: v / self.z for w, v in self.p.items()}

    def text(self, u) -> str:
        return self.vocab.decode(u).decode()

    def cond(self, u) -> dict[int, float]:
        raw = self.table((self.bos, *u))
        powered = {t: p ** (1.0 / self.temperature) for t, p in raw.items() if p > 0}
        s = sum(powered.values())
        return {t: p / s for t, p in powered.items()}

    def allowed(self, u) -> list[int]:
        out = [t for t in self.text_ids if self.text(u + (t,)) in self.viable]
        return out + ([self.eos] if self.text(u) in self.strings else [])

    def _walk(self, u, prob) -> float:
        d = self.cond(u)
        value = 0.0
        for t in self.allowed(u):
            pt = d.get(t, 0.0)
            if t == self.eos:
                self.p[u] = prob * pt
                value += pt
            elif pt > 0:
                value += pt * self._walk(u + (t,), prob * pt)
        self.efg[u] = value
        return value

    def sampler_distribution(self, bound) -> dict[tuple[int, ...], float]:
        """The exact distribution of one ASAp sample given the current bounds `bound(prefix)`."""
        out: dict[tuple[int, ...], float] = {}

        def walk(u, prob):
            d = self.cond(u)
            w = {t: d.get(t, 0.0) * (1.0 if t == self.eos else bound(u + (t,))) for t in self.allowed(u)}
            s = sum(w.values())
            for t, x in w.items():
                if x <= 0:
                    continue
                if t == self.eos:
                    out[u] = out.get(u, 0.0) + prob * x / s
                else:
                    walk(u + (t,), prob * x / s)

        walk((), 1.0)
        return out

    def gcd_distribution(self) -> dict[tuple[int, ...], float]:
        return self.sampler_distribution(lambda _: 1.0)


def binary_setup(**kwargs):
    vocab = toy_vocabulary([b"0", b"1"])
    table = binary_chars_table(vocab)
    lm = ToyLM(table, vocab.model_width)
    return vocab, table, lm, [vocab.tokens.index(BOS)]


def rich_setup(**kwargs):
    vocab = toy_vocabulary([b"0", b"1", b"00", b"01", b"10", b"11"])
    table = random_table(vocab, seed=3)
    lm = ToyLM(table, vocab.model_width)
    return vocab, table, lm, [vocab.tokens.index(BOS)]


def test_gcd_bias_of_the_binary_example_is_exact():
    vocab, table, lm, prompt = binary_setup()
    exact = Exact(vocab, table, BINARY_STRINGS)
    q, q_gcd = exact.q, exact.gcd_distribution()
    zero = (vocab.tokens.index(b"0"),) * 3
    assert q[zero] == pytest.approx(0.2, abs=1e-15)
    assert q_gcd[zero] == pytest.approx(0.5, abs=1e-15)
    assert all(v == pytest.approx(0.125) for w, v in q_gcd.items() if w != zero)
    assert kl_divergence(q, q_gcd) > 0.1
    # the sampler's own enumeration agrees with the brute force
    got = ASAp(lm, None, guide.regex(BINARY), vocab=vocab).enumerate(prompt)
    assert got.z == pytest.approx(0.625)
    assert got.q == pytest.approx(q, abs=1e-12) and got.q_gcd == pytest.approx(q_gcd, abs=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_bounds_are_sound_and_non_increasing_after_every_sample(temperature):
    vocab, table, lm, prompt = rich_setup()
    exact = Exact(vocab, table, RICH_STRINGS, temperature)
    sampler = ASAp(lm, None, guide.regex(RICH), vocab=vocab, temperature=temperature, seed=1)
    previous: dict[tuple[int, ...], float] = {}
    for _ in range(150):
        sampler.sample(prompt)
        for prefix, bound in sampler.trie(prompt).items():
            assert bound >= exact.efg.get(prefix, 0.0) - 1e-12, prefix
            assert bound <= previous.get(prefix, 1.0) + 1e-15, prefix
            previous[prefix] = bound


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_bounds_converge_and_the_sampler_becomes_exact(temperature):
    vocab, table, lm, prompt = rich_setup()
    exact = Exact(vocab, table, RICH_STRINGS, temperature)
    sampler = ASAp(lm, None, guide.regex(RICH), vocab=vocab, temperature=temperature, seed=2)
    trie = sampler.trie(prompt)
    assert kl_divergence(exact.q, exact.gcd_distribution()) > 0.01  # GCD is biased here
    for k in range(200):
        sampler.sample(prompt, n=10)
        if k < 3:  # the sampler's own exact next-sample distribution, while still learning
            mine = sampler.distribution(prompt)
            theirs = exact.sampler_distribution(trie.bound)
            assert mine.keys() == theirs.keys()
            assert all(mine[w] == pytest.approx(theirs[w], abs=1e-12) for w in mine)
        if abs(trie.bound(()) - exact.z) < 1e-12:
            break
    assert trie.bound(()) == pytest.approx(exact.z, abs=1e-12)
    for prefix, value in exact.efg.items():
        assert trie.bound(prefix) == pytest.approx(value, abs=1e-12), prefix
    dist, final = exact.sampler_distribution(trie.bound), sampler.distribution(prompt)
    assert dist.keys() == exact.q.keys()
    for w, q in exact.q.items():
        assert dist[w] == pytest.approx(q, abs=1e-9), w
        assert final[w] == pytest.approx(q, abs=1e-9), w


def _kl_empirical(samples, q) -> float:
    counts = Counter(tuple(s.token_ids) for s in samples)
    n = sum(counts.values())
    return kl_divergence({w: c / n for w, c in counts.items()}, q)


def test_asap_is_statistically_closer_than_gcd_with_a_fixed_seed():
    vocab, table, lm, prompt = binary_setup()
    exact = Exact(vocab, table, BINARY_STRINGS)
    asap = ASAp(lm, None, guide.regex(BINARY), vocab=vocab, seed=1234).sample(prompt, n=2000)
    gcd = GCD(lm, None, guide.regex(BINARY), vocab=vocab, seed=1234).sample(prompt, n=2000)
    kl_asap, kl_gcd = _kl_empirical(asap, exact.q), _kl_empirical(gcd, exact.q)
    # KL(Q_GCD || Q) = 0.223; the plug-in noise floor for 5 outcomes and n = 2000 is ~0.001
    assert kl_asap < 0.01
    assert kl_gcd > 0.15
    assert kl_gcd - kl_asap > 0.14
    assert all(s.text in BINARY_STRINGS for s in asap + gcd)


def test_outputs_are_grammatical_and_logprobs_match_the_lm():
    vocab, table, lm, prompt = rich_setup()
    exact = Exact(vocab, table, RICH_STRINGS, temperature=0.7)
    raw = Exact(vocab, table, RICH_STRINGS, temperature=1.0)
    for cls in (ASAp, GCD):
        sampler = cls(lm, None, guide.regex(RICH), vocab=vocab, temperature=0.7, seed=5)
        for s in sampler.sample(prompt, n=100):
            assert re.fullmatch(RICH, s.text) and s.eos_id in vocab.eos_ids
            w = tuple(s.token_ids)
            assert s.target_logprob == pytest.approx(math.log(exact.p[w]), abs=1e-9)
            assert s.logprob == pytest.approx(math.log(raw.p[w]), abs=1e-9)


def test_repeated_prefixes_cost_no_forward_pass():
    vocab, table, lm, prompt = rich_setup()
    exact = Exact(vocab, table, RICH_STRINGS)
    sampler = ASAp(lm, None, guide.regex(RICH), vocab=vocab, seed=0)
    samples = list(sampler.iter_samples(prompt, n=300))
    last = samples[-1].diagnostics
    assert lm.calls == last.forward_passes == last.trie_nodes <= len(exact.efg)
    steps = sum(len(s.token_ids) + 1 for s in samples)
    assert last.forward_passes + last.forward_passes_saved == steps
    assert last.root_bound >= exact.z - 1e-12
    # a new sampler for the same model starts a fresh trie; the same sampler shares it
    assert sampler.trie(prompt) is sampler.trie(list(prompt))


def test_iterator_is_lazy_and_unbounded():
    vocab, table, lm, prompt = binary_setup()
    it = ASAp(lm, None, guide.regex(BINARY), vocab=vocab, seed=0).iter_samples(prompt)
    first = [next(it) for _ in range(3)]
    assert all(s.text in BINARY_STRINGS for s in first)
    sampler = ASAp(lm, None, guide.regex(BINARY), vocab=vocab, seed=0)
    sampler.sample(prompt, n=20)
    learned = sampler.trie(prompt).bound(())
    assert learned < 1.0  # "0" leads to 0.25 of its mass at most
    assert next(sampler.iter_samples(prompt)).diagnostics.root_bound <= learned  # carried over
    sampler.reset()
    assert sampler.trie(prompt).bound(()) == 1.0


def test_accept_everything_grammar_is_the_plain_lm():
    vocab, table, lm, prompt = binary_setup()
    # ".*" rather than "[01]*": the latter hits a bytedfa minimisation bug (IndexError) today
    sampler = ASAp(lm, None, guide.regex(".*"), vocab=vocab, seed=0, max_new_tokens=5)
    sampler.sample(prompt, n=50)
    assert all(b == 1.0 for _, b in sampler.trie(prompt).items())
    e = sampler.enumerate(prompt)
    assert e.z == pytest.approx(1.0) and e.q == pytest.approx(e.q_gcd) and len(e.q) == 8


def test_depth_cap_zero_degrades_to_gcd():
    vocab, table, lm, prompt = binary_setup()
    sampler = ASAp(lm, None, guide.regex(BINARY), vocab=vocab, seed=7, depth_cap=0)
    samples = sampler.sample(prompt, n=400)
    assert all(s.text in BINARY_STRINGS for s in samples)
    assert [p for p, _ in sampler.trie(prompt).items()] == [()]
    share = sum(s.text == "000" for s in samples) / len(samples)
    assert 0.42 < share < 0.58  # GCD's 0.5, not Q's 0.2
    capped = ASAp(lm, None, guide.regex(BINARY), vocab=vocab, seed=7, depth_cap=1)
    capped.sample(prompt, n=50)
    assert max(len(p) for p, _ in capped.trie(prompt).items()) == 1


def test_dead_ends_from_max_new_tokens_are_learned():
    vocab, table, lm, prompt = rich_setup()
    # "000" and "1xx" need two tokens at least with "00"/"10"/"11"; one token leaves only "01"
    sampler = ASAp(lm, None, guide.regex(RICH), vocab=vocab, seed=0, max_new_tokens=1)
    samples = sampler.sample(prompt, n=30)
    assert {s.text for s in samples} == {"01"}
    assert sum(s.diagnostics.restarts for s in samples) > 0
    assert samples[-1].diagnostics.restarts == 0  # learned: dead children have bound 0
    e = sampler.enumerate(prompt)
    assert list(e.q) == [(vocab.tokens.index(b"01"),)]


def test_empty_language_is_a_clear_error():
    vocab, table, lm, prompt = binary_setup()
    with pytest.raises(EmptyLanguageError):
        ASAp(lm, None, guide.regex("2"), vocab=vocab)
    # non-empty language, but nothing fits within max_new_tokens: learned, then raised
    sampler = ASAp(lm, None, guide.regex("0000"), vocab=vocab, max_new_tokens=2, seed=0)
    with pytest.raises(EmptyLanguageError):
        sampler.sample(prompt, n=1)
    gcd = GCD(lm, None, guide.regex("0000"), vocab=vocab, max_new_tokens=2, max_restarts=5)
    with pytest.raises(GuideDeadEnd):
        gcd.sample(prompt)


@pytest.mark.parametrize(
    "kwargs",
    [{"top_k": 50}, {"top_p": 0.9}, {"do_sample": True}, {"repetition_penalty": 1.1}, {"temperature": 0},
     {"temperature": -1.0}, {"temperature": float("nan")}, {"max_new_tokens": 0}, {"depth_cap": -1}],
)
def test_bad_arguments_are_clear_errors(kwargs):
    vocab, table, lm, prompt = binary_setup()
    with pytest.raises(SamplerConfigError) as info:
        ASAp(lm, None, guide.regex(BINARY), vocab=vocab, **kwargs)
    assert isinstance(info.value, GuideError) and isinstance(info.value, ValueError)
    if "top_k" in kwargs:
        assert "would change the distribution" in str(info.value)


def test_prompt_errors():
    vocab, table, lm, prompt = binary_setup()
    sampler = ASAp(lm, None, guide.regex(BINARY), vocab=vocab)
    with pytest.raises(SamplerConfigError):
        sampler.sample([])
    with pytest.raises(SamplerConfigError):
        sampler.sample("text needs a tokenizer")
    with pytest.raises(SamplerConfigError):
        ASAp(lm, None, guide.regex(BINARY))
    with pytest.raises(SamplerConfigError):
        sampler.sample(prompt, n=-1)
    assert sampler.sample(prompt, n=0) == []


def test_works_with_composed_constraints():
    vocab, table, lm, prompt = rich_setup()
    constraint = guide.regex("[01]{3}") & (guide.regex("0.*") | guide.regex("11."))
    strings = {"000", "001", "010", "011", "110", "111"}
    exact = Exact(vocab, table, strings)
    sampler = ASAp(lm, None, constraint, vocab=vocab, seed=0)
    e = sampler.enumerate(prompt)
    assert e.q == pytest.approx(exact.q, abs=1e-12)
    assert all(s.text in strings for s in sampler.sample(prompt, n=50))




@pytest.mark.model
def test_embedded_model_prompt_cache_is_exact_and_outputs_are_accepted(one_torch_thread):
    model, tok = guide.load_default_model()
    prompt, constraint = "Name a French city. One word.", guide.choice(["Lyon", "Nice"])
    cached = ASAp(model, tok, constraint, seed=0, max_new_tokens=6)
    plain = GCD(model, tok, constraint, seed=0, max_new_tokens=6, prompt_cache=False)
    e_cached, e_plain = cached.enumerate(prompt), plain.enumerate(prompt)
    assert cached._state(prompt).kv_mode is True and plain._state(prompt).kv_mode is False
    assert e_cached.q.keys() == e_plain.q.keys()
    assert all(abs(e_cached.q[w] - e_plain.q[w]) < 1e-3 for w in e_cached.q)
    for s in cached.sample(prompt, n=20):
        assert s.text in {"Lyon", "Nice"}
        m = cached.compiled.matcher()
        assert all(m.advance(t) for t in s.token_ids) and m.is_accepting()
    assert s.diagnostics.forward_passes_saved > 0


def test_works_with_a_context_free_grammar():
    from guide.grammars.cfg import grammar

    vocab, table, lm, prompt = rich_setup()
    constraint = grammar('start: "000" | "1" BIT BIT | "01"\nBIT: "0" | "1"\n')
    exact = Exact(vocab, table, RICH_STRINGS)
    sampler = ASAp(lm, None, constraint, vocab=vocab, seed=0)
    assert sampler.enumerate(prompt).q == pytest.approx(exact.q, abs=1e-12)
    samples = sampler.sample(prompt, n=300)
    assert all(s.text in RICH_STRINGS for s in samples)
    assert sampler.distribution(prompt) == pytest.approx(exact.sampler_distribution(sampler.trie(prompt).bound), abs=1e-12)


def test_a_saved_trie_resumes_learning_exactly():
    vocab, table, lm, prompt = rich_setup()
    exact = Exact(vocab, table, RICH_STRINGS)
    sampler = ASAp(lm, None, guide.regex(RICH), vocab=vocab, seed=0)
    for _ in range(200):  # learn until every viable prefix is expanded
        sampler.sample(prompt, n=10)
        if sampler.trie(prompt).expanded == len(exact.efg):
            break
    text = sampler.save_trie(prompt)
    again = ASAp(lm, None, guide.regex(RICH), vocab=vocab, seed=1)
    again.load_trie(prompt, text)
    assert dict(again.trie(prompt).items()) == dict(sampler.trie(prompt).items())
    assert again.trie(prompt).expanded == len(exact.efg)
    assert again.distribution(prompt) == sampler.distribution(prompt)
    calls = lm.calls
    assert all(re.fullmatch(RICH, s.text) for s in again.sample(prompt, n=100))
    assert lm.calls == calls  # every conditional came from the loaded trie
    with pytest.raises(SamplerConfigError, match="temperature"):
        ASAp(lm, None, guide.regex(RICH), vocab=vocab, temperature=0.5).load_trie(prompt, text)
    with pytest.raises(SamplerConfigError, match="constraint"):
        ASAp(lm, None, guide.regex(BINARY), vocab=vocab).load_trie(prompt, text)
