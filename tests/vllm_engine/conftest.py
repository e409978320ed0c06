"""The vLLM tests run only in the vLLM venv (`make test` runs them there, after the main suite).

tests/conftest.py keeps this folder out of the main venv's collection when vllm is absent.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from vllm_env import model_dir  # sets the vLLM env vars before any test imports vllm


def pytest_configure(config):
    # Shutting an offline engine down leaves a zmq Context for the garbage collector, whose
    # __del__ complains on this vLLM; with the suite's warnings-as-errors it would fail whichever
    # test happens to run next.
    config.addinivalue_line(
        "filterwarnings",
        r"ignore:Exception ignored in. <function Context\.__del__:pytest.PytestUnraisableExceptionWarning",
    )


@pytest.fixture(scope="session")
def model_path() -> str:
    return str(model_dir())


@pytest.fixture(scope="session")
def tokenizer(model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)
