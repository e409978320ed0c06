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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m vllm.entrypoints.openai.api_server` on 127.0.0.1 (`vllm serve` is broken in
    vllm-cpu 0.32, ECOSYSTEM.md 2.4), stopped with its whole process group."""

    def __init__(self, model: str, *, extra_args: list[str] = (), log_path: str | None = None) -> None:
        import subprocess
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path or os.devnull, "w")
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
               "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(self.port),
               *SERVER_ARGS, *extra_args]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 300.0) -> None:
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the vLLM server exited with status {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(1.0)
        raise TimeoutError(f"the vLLM server was not ready after {timeout:.0f} s")

    def post(self, path: str, body: dict, timeout: float = 120.0) -> tuple[int, dict]:
        import json
        import urllib.error
        import urllib.request

        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def stop(self) -> None:
        import signal
        import subprocess

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
