"""How the vLLM tests and benchmark run the CPU engine (ECOSYSTEM.md 2.4): one place for the settings."""

from __future__ import annotations

import os
from pathlib import Path

# Before vllm is imported: a 1 GiB KV cache fits this machine; the hub stays off.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")

MAX_MODEL_LEN = 512
MAX_NUM_SEQS = 8

ENGINE_KWARGS = dict(
    dtype="float32",
    max_model_len=MAX_MODEL_LEN,
    max_num_seqs=MAX_NUM_SEQS,
    enforce_eager=True,
    gpu_memory_utilization=0.3,
    seed=0,
)

SERVER_ARGS = [
    "--dtype", "float32",
    "--max-model-len", str(MAX_MODEL_LEN),
    "--max-num-seqs", str(MAX_NUM_SEQS),
    "--enforce-eager",
    "--gpu-memory-utilization", "0.3",
    "--seed", "0",
]


def model_dir() -> Path:
    """The embedded SmolLM2 as an HF folder (written by `guide.load_default_model()` in the main venv)."""
    from guide.models import _CONVERTED_MARKER, default_model_dir

    folder = default_model_dir()
    if not (folder / _CONVERTED_MARKER).is_file():
        raise RuntimeError(
            f"{folder} holds no converted model: run `make test` (or, in .venv, "
            "`python -c 'import guide; guide.load_default_model()'`) to convert it once"
        )
    return folder


#: Unconstrained requests (prompt, max_tokens) that the offline tests mix into constrained
#: batches; baseline_without_plugin.py generates them on an engine that never loaded guide.
UNCONSTRAINED = [
    ("The capital of France is", 24),
    ("Once upon a time", 40),
    ("def fibonacci(n):", 32),
]
