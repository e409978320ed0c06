"""MBR reranking: selection against a hand-computed oracle, pair counting, the efficient variants,
the utilities (sacrebleu, embedding, a judge read from logits) and bad input; model tests run the
embedded SmolLM2 (JSON Schema MBR, the real judge)."""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest

from guide.errors import GuideError, ModelLoadError, SamplerConfigError
from guide.samplers import MBR, Utility, make_utility
from guide.samplers.mbr import expected_utilities
from guide.samplers.utilities import Bleu, ChrF, Embedding, ExactMatch, Judge, last_number

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


class TableUtility(Utility):
    """u(h, r) read from a fixed matrix; records every pair it is asked for."""

    name = "table"

    def __init__(self, table, *, symmetric: bool = False) -> None:
        super().__init__()
        self.table = np.asarray(table, dtype=float)
        self.symmetric = symmetric
        self.seen: list[tuple[int, int]] = []

    def _score(self, texts, pairs, source):
        self.seen.extend(pairs)
        return np.array([self.table[h, r] for h, r in pairs])


def oracle_expected(table, refs=None, weights=None):
    """Plain loops: mean of u(h, r) over references r != h, weighted."""
    n = len(table)
    refs = list(range(n)) if refs is None else refs
    w = [1.0] * n if weights is None else weights
    out = []
    for h in range(n):
        num = sum(w[r] * table[h][r] for r in refs if r != h)
        den = sum(w[r] for r in refs if r != h)
        out.append(num / den if den else math.nan)
    return out


TABLE = [
    [9.0, 0.2, 0.9, 0.1],
    [0.8, 9.0, 0.7, 0.6],
    [0.3, 0.4, 9.0, 0.2],
    [0.5, 0.1, 0.1, 9.0],
]  # diagonal 9.0: a self-pair would win if it were ever counted


def test_selection_is_the_argmax_of_hand_computed_expected_utility():
    utility = TableUtility(TABLE)
    result = MBR(utility).select(["a", "b", "c", "d"])
    # by hand: a = (0.2+0.9+0.1)/3 = 0.4, b = (0.8+0.7+0.6)/3 = 0.7, c = 0.3, d = 0.2333
    assert result.expected == pytest.approx([0.4, 0.7, 0.3, 0.7 / 3])
    assert result.expected == pytest.approx(oracle_expected(TABLE))
    assert result.index == 1 and result.text == "b"
    assert not any(h == r for h, r in utility.seen)  # the self-pair is never scored
    assert np.isnan(np.diag(result.matrix)).all()
    off = ~np.eye(4, dtype=bool)
    assert np.array_equal(result.matrix[off], np.asarray(TABLE)[off])


def test_model_weighted_expectation_matches_the_oracle():
    weights = [0.1, 0.1, 0.1, 5.0]  # reference d dominates: a candidate close to d wins
    result = MBR(TableUtility(TABLE)).select(["a", "b", "c", "d"], weights=weights)
    assert result.expected == pytest.approx(oracle_expected(TABLE, weights=weights))
    assert result.index == int(np.argmax(oracle_expected(TABLE, weights=weights)))
    assert result.index == 1  # b: 0.6 against d; a only 0.1


def test_ties_go_to_the_lowest_index_and_ineligible_candidates_are_never_picked():
    flat = np.ones((3, 3))
    assert MBR(TableUtility(flat)).select(["x", "y", "z"]).index == 0
    result = MBR(TableUtility(TABLE)).select(["a", "b", "c", "d"], eligible=[True, False, True, True])
    assert result.index == 0 and not result.alive[1]
    # b still serves as a reference for the others
    assert result.expected[0] == pytest.approx(oracle_expected(TABLE)[0])


@pytest.mark.parametrize("n", [2, 5, 7])
def test_symmetric_utilities_score_each_unordered_pair_once(n):
    rng = np.random.default_rng(n)
    base = rng.random((n, n))
    sym = TableUtility(base + base.T, symmetric=True)
    result = MBR(sym).select([str(i) for i in range(n)])
    assert sym.calls == result.utility_calls == n * (n - 1) // 2
    assert len(set(sym.seen)) == len(sym.seen) and all(h < r for h, r in sym.seen)
    assert np.allclose(result.matrix, result.matrix.T, equal_nan=True)
    asym = TableUtility(base)
    assert MBR(asym).select([str(i) for i in range(n)]).utility_calls == asym.calls == n * (n - 1)


def test_exact_match_is_majority_vote_with_symmetric_counting():
    texts = ["The answer is 12.", "It is 7", "12 apples", "so 12", "7", "no number"]
    exact = ExactMatch(last_number)
    result = MBR(exact).select(texts)
    assert exact.calls == 15
    assert last_number(result.text) == "12" and result.index == 0
    assert result.expected[0] == pytest.approx(2 / 5) and result.expected[5] == 0.0  # None matches nothing
    assert MBR("exact").select(["4", " 4", "5"]).text == "4"


def test_exact_match_mbr_equals_the_majority_vote_on_random_label_sets():
    from collections import Counter

    rng = np.random.default_rng(0)
    for _ in range(50):
        labels = [str(x) for x in rng.integers(0, 4, size=int(rng.integers(2, 12)))]
        pick = MBR("exact").select(labels)
        counts = Counter(labels)
        assert counts[pick.text] == max(counts.values())
        assert pick.index == labels.index(pick.text)  # the first of the tied majority labels' members


def test_sacrebleu_utilities_are_sentence_scores_over_100():
    from sacrebleu.metrics import BLEU, CHRF

    texts = ["the cat sat on the mat", "a cat sat on a mat", "dogs bark loudly"]
    for utility, metric in ((ChrF(), CHRF()), (Bleu(), BLEU(effective_order=True))):
        result = MBR(utility).select(texts)
        for h in range(3):
            for r in range(3):
                if h != r:
                    want = metric.sentence_score(texts[h], [texts[r]]).score / 100
                    assert result.matrix[h, r] == pytest.approx(want)
        assert utility.calls == 6 and result.index in (0, 1)


def test_subsample_scores_only_the_drawn_references():
    n, m = 10, 3
    rng = np.random.default_rng(1)
    table = rng.random((n, n))
    utility = TableUtility(table)
    result = MBR(utility, method="subsample", references=m, seed=5).select([str(i) for i in range(n)])
    refs = result.references
    assert len(refs) == m and len(set(refs)) == m
    assert {r for _, r in utility.seen} <= set(refs)
    assert result.utility_calls == n * m - m  # self-pairs of the references skipped
    assert result.expected == pytest.approx(oracle_expected(table.tolist(), refs=refs))
    again = MBR(TableUtility(table), method="subsample", references=m, seed=5).select([str(i) for i in range(n)])
    assert again.references == refs and again.index == result.index


def test_pruning_drops_hopeless_candidates_and_keeps_the_winner():
    n = 32
    cluster = set(range(0, n, 3))  # 11 near-identical candidates: the MBR winner is among them
    table = np.array([[0.9 if (h in cluster and r in cluster) else 0.1 for r in range(n)] for h in range(n)])
    table[3, :] += 0.01  # a unique winner inside the cluster
    full = MBR(TableUtility(table)).select([str(i) for i in range(n)])
    utility = TableUtility(table)
    pruned = MBR(utility, method="prune", seed=0).select([str(i) for i in range(n)])
    assert pruned.index == full.index == 3
    assert pruned.utility_calls == utility.calls < full.utility_calls / 2
    assert not pruned.alive[[i for i in range(n) if i not in cluster]].any()
    assert np.isnan(pruned.expected[~pruned.alive]).all()


def test_progress_bar_goes_to_stderr_and_changes_nothing(capsys):
    quiet = MBR(TableUtility(TABLE), progress=False).select(["a", "b", "c", "d"])
    shown = MBR(TableUtility(TABLE), progress=True).select(["a", "b", "c", "d"])
    assert capsys.readouterr().out == ""
    assert shown.index == quiet.index and np.array_equal(shown.matrix, quiet.matrix, equal_nan=True)


def test_expected_utilities_handles_unscored_rows():
    m = np.full((3, 3), np.nan)
    m[0, 1] = 0.5
    out = expected_utilities(m)
    assert out[0] == 0.5 and np.isnan(out[1]) and np.isnan(out[2])


# ---- bad input ------------------------------------------------------------------------------


def test_bad_input_gives_clear_guide_errors(tmp_path):
    with pytest.raises(SamplerConfigError, match="at least one candidate"):
        MBR("exact").select([])
    with pytest.raises(SamplerConfigError, match="unknown MBR utility 'rouge'; known: exact, chrf"):
        make_utility("rouge")
    with pytest.raises(SamplerConfigError, match="unknown MBR utility"):
        MBR("rouge")
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="no-such-model"):
        Embedding(missing)
    with pytest.raises(ModelLoadError):
        make_utility("embedding", path=str(tmp_path))  # exists, but no config.json
    with pytest.raises(SamplerConfigError, match="`references`"):
        MBR("exact", method="subsample")
    with pytest.raises(SamplerConfigError, match="`method`"):
        MBR("exact", method="beam")  # type: ignore[arg-type]
    with pytest.raises(SamplerConfigError, match="`weights`"):
        MBR("exact").select(["a", "b"], weights=[1.0, -1.0])
    for error in (SamplerConfigError, ModelLoadError):
        assert issubclass(error, GuideError)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_n_below_one_is_rejected_before_any_model_call(n):
    from guide.samplers.mbr import mbr_generate

    boom = SimpleNamespace()  # any use of the model would raise AttributeError
    with pytest.raises(SamplerConfigError, match="`n` >= 1"):
        mbr_generate(boom, boom, "prompt", n=n)


# ---- the judge, on a fake model with known logits ---------------------------------------------


class CharTokenizer:
    """One token per ASCII character; no chat template, pad id 0."""

    chat_template = None
    pad_token_id = 0

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]


TEMPLATE, PREFIX = "Q:{source}|R:{reference}|C:{candidate}|", "S:"


def judge_target(candidate: str, reference: str) -> float:
    return 5.0 if candidate == reference else 1.0 + len(candidate) % 4


class FakeJudgeLM:
    """Causal: at a position whose prefix ends with the score prefix, the logit of digit d is
    -(d - s)^2 / 2 with s = judge_target(candidate, reference); everywhere else digit 1 dominates."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, input_ids, attention_mask):
        import torch

        self.calls += 1
        batch, length = input_ids.shape
        logits = torch.zeros((batch, length, 128))
        logits[:, :, ord("1")] = 50.0
        for b in range(batch):
            text = "".join(chr(int(t)) for t in input_ids[b])
            for i in range(length):
                found = re.fullmatch(r"Q:.*\|R:(.*)\|C:(.*)\|S:", text[: i + 1], flags=re.DOTALL)
                if found and attention_mask[b, i]:
                    s = judge_target(found.group(2), found.group(1))
                    logits[b, i, ord("1")] = 0.0
                    for d in range(1, 6):
                        logits[b, i, ord(str(d))] = -((d - s) ** 2) / 2
        return SimpleNamespace(logits=logits)


def hand_score(candidate: str, reference: str) -> float:
    s = judge_target(candidate, reference)
    w = [math.exp(-((d - s) ** 2) / 2) for d in range(1, 6)]
    mean = sum(d * x for d, x in zip(range(1, 6), w)) / sum(w)
    return (mean - 1) / 4


def test_judge_reads_the_score_distribution_from_logits_at_each_rows_last_token():
    texts = ["yes", "yes", "a longer answer", "no"]
    model = FakeJudgeLM()
    judge = Judge(model, CharTokenizer(), template=TEMPLATE, prefix=PREFIX, batch_size=8)
    result = MBR(judge).select(texts, source="q?")
    for h in range(4):
        for r in range(4):
            if h != r:
                assert result.matrix[h, r] == pytest.approx(hand_score(texts[h], texts[r]), abs=1e-6)
    assert judge.calls == 12 and model.calls == 2  # 12 pairs in batches of 8, right-padded
    assert np.allclose(judge.last_distributions.sum(axis=1), 1.0)
    want = oracle_expected([[hand_score(a, b) for b in texts] for a in texts])
    assert result.index == int(np.argmax(want)) == 0


def test_judge_is_deterministic_and_batch_independent():
    texts = ["x", "yy", "zzz"]
    pairs = [(h, r) for h in range(3) for r in range(3) if h != r]
    one = Judge(FakeJudgeLM(), CharTokenizer(), template=TEMPLATE, prefix=PREFIX, batch_size=1)
    many = Judge(FakeJudgeLM(), CharTokenizer(), template=TEMPLATE, prefix=PREFIX, batch_size=4)
    first = many.pair_scores(texts, pairs, source="s")
    assert np.array_equal(first, many.pair_scores(texts, pairs, source="s"))
    assert np.allclose(first, one.pair_scores(texts, pairs, source="s"), atol=1e-6)


def test_judge_rejects_bad_configuration():
    with pytest.raises(SamplerConfigError, match="single tokens"):
        Judge(FakeJudgeLM(), CharTokenizer(), scores=(1, 10), template=TEMPLATE).pair_scores(["a", "b"], [(0, 1)])
    with pytest.raises(SamplerConfigError, match="no \\{reference\\} field"):
        Judge(FakeJudgeLM(), CharTokenizer(), template="{source} {candidate}")
    with pytest.raises(SamplerConfigError, match="both"):
        Judge(FakeJudgeLM(), None)


# ---- real models ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded():
    from guide.models import load_default_model

    return load_default_model()




@pytest.mark.model
def test_embedding_utility_with_the_bundled_minilm():
    utility = Embedding()
    texts = ["A man is eating food.", "A man is eating a meal.", "The stock market fell sharply today."]
    result = MBR(utility).select(texts)
    assert utility.encoded == 3 and utility.calls == 3
    assert result.matrix[0, 1] > 0.7  # paraphrases
    assert result.matrix[0, 2] < 0.2  # unrelated
    assert np.allclose(np.linalg.norm(utility.embed(texts), axis=1), 1.0, atol=1e-5)
    assert result.index in (0, 1)


@pytest.mark.model
def test_real_judge_is_deterministic_and_counts_pairs(embedded):
    model, tok = embedded
    texts = ["Paris", "Paris is the capital of France.", "London"]
    judge = Judge(model, tok, batch_size=3)
    first = MBR(judge).select(texts, source="What is the capital of France?")
    second = MBR(judge).select(texts, source="What is the capital of France?")
    assert judge.calls == 2 * 6 and judge.forward_rows == 12
    assert np.array_equal(first.matrix, second.matrix, equal_nan=True)
    off = first.matrix[~np.eye(3, dtype=bool)]
    assert ((off >= 0) & (off <= 1)).all() and np.allclose(judge.last_distributions.sum(axis=1), 1.0)


@pytest.mark.model
def test_mbr_under_a_json_schema_returns_schema_valid_json(embedded):
    import jsonschema

    import guide
    from guide.samplers import mbr_generate

    model, tok = embedded
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0, "maximum": 150}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    result = mbr_generate(model, tok, "Extract as JSON: Maria is 34 years old.", guide.json_schema(schema), n=4,
                 utility="chrf", max_new_tokens=40, seed=0)
    jsonschema.validate(json.loads(result.text), schema)
    assert len(result.candidates) == 4 and result.complete[result.index]
    for text, complete in zip(result.candidates, result.complete):
        if complete:
            jsonschema.validate(json.loads(text), schema)
    assert result.utility_calls == 12 - sum(not c for c in result.complete) * 3


@pytest.mark.model
def test_model_weighted_references_on_the_embedded_model(embedded):
    import guide
    from guide.samplers.mbr import _sequence_logprobs

    model, tok = embedded
    prompt = "How many legs does a cat have? Answer with a number."
    uniform = MBR("exact").generate(model, tok, prompt, guide.regex("[0-9]{1,2}"), n=4, max_new_tokens=4, seed=3)
    weighted = MBR("exact").generate(model, tok, prompt, guide.regex("[0-9]{1,2}"), n=4, max_new_tokens=4, seed=3,
                                     weights="model")
    assert weighted.candidates == uniform.candidates  # same seed, same pool
    from guide.generate import Generation

    gens = [Generation(t, tok.encode(t, add_special_tokens=False), True) for t in uniform.candidates]
    w = np.exp(_sequence_logprobs(model, tok, prompt, gens, chat=None, system=None, temperature=0.7))
    table = np.nan_to_num(uniform.matrix)
    assert weighted.expected == pytest.approx(oracle_expected(table.tolist(), weights=list(w / w.max())))
