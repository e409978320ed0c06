"""The transformers pipeline: every decoding mode of `model.generate` stays inside the constraint.

A tiny randomly initialised Llama with the SmolLM2 tokenizer keeps these fast; its logits are
49,160 wide (wider than the 49,152-token tokenizer) on purpose.
"""

from __future__ import annotations

import re

import pytest
import torch

import guide

pytestmark = pytest.mark.model

DATE = r"(19|20)\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
WORDS = r"[a-z]{1,6}( [a-z]{1,6})?\."  # at most 14 bytes, so 16 new tokens always complete it


@pytest.fixture(scope="module")
def tiny_model(smollm2_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49160, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
        eos_token_id=2, pad_token_id=2, bos_token_id=1,
    )
    model = LlamaForCausalLM(config).eval()
    return model, smollm2_tokenizer


def _prompts(tok, texts):
    tok.padding_side = "left"
    return tok(texts, return_tensors="pt", padding=True)


def _new_texts(tok, out, width, eos=2):
    texts = []
    for row in out[:, width:].tolist():
        row = row[: row.index(eos)] if eos in row else row
        texts.append(tok.decode(row))
    return texts


@pytest.mark.parametrize(
    "kwargs",
    [
        {"do_sample": False},
        {"do_sample": True, "top_k": 50, "temperature": 1.5},
        {"do_sample": True, "num_return_sequences": 3},
        {"num_beams": 3, "num_return_sequences": 3, "do_sample": False},
    ],
    ids=["greedy", "sample", "n3", "beam3"],
)
def test_generate_modes_stay_inside_the_constraint(tiny_model, kwargs):
    model, tok = tiny_model
    torch.manual_seed(1)
    inputs = _prompts(tok, ["The date is", "Write a short date please:"])
    proc = guide.constrain(tok, guide.regex(DATE))
    out = model.generate(**inputs, logits_processor=[proc], max_new_tokens=16, pad_token_id=2, eos_token_id=2, **kwargs)
    texts = _new_texts(tok, out, inputs["input_ids"].shape[1])
    assert len(texts) == 2 * kwargs.get("num_return_sequences", 1)
    for text in texts:
        assert re.fullmatch(DATE, text), text


def test_one_constraint_per_prompt_with_left_padding(tiny_model):
    model, tok = tiny_model
    patterns = [r"(yes|no)", r"[0-9]{3}", WORDS]
    inputs = _prompts(tok, ["a", "a much longer prompt than the first", "mid size"])
    proc = guide.constrain(tok, [guide.regex(p) for p in patterns])
    out = model.generate(**inputs, logits_processor=[proc], max_new_tokens=16, do_sample=True, pad_token_id=2)
    for pattern, text in zip(patterns, _new_texts(tok, out, inputs["input_ids"].shape[1]), strict=True):
        assert re.fullmatch(pattern, text), (pattern, text)


def test_rows_match_single_row_runs(tiny_model):
    model, tok = tiny_model
    prompts = ["one", "a second, longer prompt"]
    batch = guide.generate(model, tok, prompts, guide.regex(WORDS), max_new_tokens=16, chat=False)
    single = [guide.generate(model, tok, p, guide.regex(WORDS), max_new_tokens=16, chat=False) for p in prompts]
    assert batch == single


def test_processor_is_reusable_and_rejects_wrong_batch(tiny_model):
    model, tok = tiny_model
    proc = guide.constrain(tok, [guide.regex("a"), guide.regex("b")])
    for _ in range(2):
        inputs = _prompts(tok, ["x", "y"])
        out = model.generate(**inputs, logits_processor=[proc], max_new_tokens=4, pad_token_id=2)
        assert _new_texts(tok, out, inputs["input_ids"].shape[1]) == ["a", "b"]
    with pytest.raises(ValueError, match="one constraint per prompt"):
        model.generate(**_prompts(tok, ["x", "y", "z"]), logits_processor=[proc], max_new_tokens=2, pad_token_id=2)


def test_masks_extra_logit_columns_and_eos_only_when_accepting(tiny_model):
    _, tok = tiny_model
    proc = guide.constrain(tok, guide.regex("ab?"))
    ids = torch.tensor([[5, 6]])
    scores = torch.zeros(1, 49160)
    scores[0, 49152:] = 100.0
    out = proc(ids, scores.clone())
    assert torch.isinf(out[0, 49152:]).all()
    assert torch.isinf(out[0, 2]), "EOS must be masked before the text is complete"
    a = tok.convert_tokens_to_ids("a")
    out = proc(torch.tensor([[5, 6, a]]), scores.clone())
    assert torch.isfinite(out[0, 2]) and torch.isfinite(out[0, tok.convert_tokens_to_ids("b")])
    assert torch.isfinite(out).sum() == 2
    out = proc(torch.tensor([[5, 6, a, 2]]), scores.clone())  # finished row: only EOS/pad
    assert torch.isfinite(out).sum() == 1 and torch.isfinite(out[0, 2])


def test_dead_end_raises_or_ends(tiny_model):
    model, tok = tiny_model
    impossible = guide.regex("a+") & guide.regex("b+")
    inputs = _prompts(tok, ["x"])
    with pytest.raises(guide.GuideDeadEnd, match="no token can continue"):
        model.generate(**inputs, logits_processor=[guide.constrain(tok, impossible)], max_new_tokens=3, pad_token_id=2)
    proc = guide.constrain(tok, impossible, on_dead_end="eos")
    out = model.generate(**inputs, logits_processor=[proc], max_new_tokens=3, pad_token_id=2, do_sample=True)
    assert out[0, inputs["input_ids"].shape[1]].item() == 2


def test_no_nan_reaches_sampling(tiny_model):
    _, tok = tiny_model
    proc = guide.constrain(tok, guide.regex(DATE))
    scores = torch.randn(4, 49160)
    out = proc(torch.tensor([[1, 2]] * 4), scores)
    probs = torch.softmax(out, dim=-1)
    assert not torch.isnan(probs).any()
    assert (torch.isfinite(out).sum(dim=1) > 0).all()


def test_incomplete_generation_is_an_error(tiny_model):
    model, tok = tiny_model
    with pytest.raises(guide.IncompleteGenerationError, match="max_new_tokens"):
        guide.generate(model, tok, "x", guide.regex(r"[a-z]{40}"), max_new_tokens=3, chat=False)
    partial = guide.generate(model, tok, "x", guide.regex(r"[a-z]{40}"), max_new_tokens=3, chat=False, allow_incomplete=True)
    assert re.fullmatch(r"[a-z]+", partial)


def test_embedded_model_extracts_a_date():
    model, tok = guide.load_default_model()
    prompt = "Write the date in this sentence in ISO format (YYYY-MM-DD).\n\nThe lease was signed on the 14th of March 2023."
    text = guide.generate(model, tok, prompt, guide.regex(DATE), max_new_tokens=24)
    assert re.fullmatch(DATE, text), text
    assert text.startswith("2023"), text


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(guide.ModelLoadError, match="never downloads"):
        guide.load_model("HuggingFaceTB/SmolLM2-135M-Instruct-does-not-exist")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(guide.ModelLoadError):
        guide.load_model(tmp_path)
