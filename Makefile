# Tally's front door: `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
VENV := .venv
PY := $(VENV)/bin/python
TRITON_ENV := deploy/triton/env/.venv
ONNX := deploy/triton/gpu/tally_detector/1/model.onnx
TORCH_VERSION := 2.13.0
NPM_DONE := node_modules/.package-lock.json
# The unit tests: every package's tests (libs, services, tools, ml) and the harness's own, less
# those that need a server of any kind (marked: integration, e2e, reliability, containers) or
# PyTorch (training).
UNIT_PATHS := $(wildcard libs/*/tests services/*/tests tools/*/tests ml/*/tests) tests/test_*.py
UNIT_MARKERS := not integration and not e2e and not reliability and not containers and not training

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-18s\033[0m %s\n", $$1, $$2}'

$(UV):
	python3 -m pip install --user --quiet uv

.PHONY: install
install: $(UV) ## create .venv (services, libs, dev tools) and the Triton environment
	$(UV) sync --inexact --frozen
	$(UV) sync --project deploy/triton/env --frozen

# The dashboard's JavaScript tooling (TypeScript, its checker) from package-lock.json, on
# Debian's node and npm.
$(NPM_DONE): package.json package-lock.json
	bash scripts/ensure-servers.sh node
	npm ci --no-audit --no-fund
	@touch $@

.PHONY: js-deps
js-deps: $(NPM_DONE) ## install the dashboard's JavaScript checker (Debian's node and npm, then npm ci)

.PHONY: triton-env
triton-env: $(UV) ## the environment local Triton runs in (tritonserver + ONNX Runtime)
	$(UV) sync --project deploy/triton/env --frozen

# torch stays out of uv.lock: pip takes the CPU build this machine keeps on disk, where uv would
# download a multi-GB CUDA build. Only training and its tests need it.
.PHONY: torch
torch: install ## install PyTorch (CPU) into .venv, for training
	@$(PY) -c 'import torch' 2>/dev/null || python3 -m pip --python $(PY) install --quiet torch==$(TORCH_VERSION)

.PHONY: up
up: install triton-env servers ## start the whole stack in the background (edge on 127.0.0.1:8080, or TALLY_EDGE_PORT)
	$(VENV)/bin/tally-stack up

.PHONY: down
down: ## stop the whole stack (every process it started)
	@$(VENV)/bin/tally-stack down

.PHONY: rebuild-projection
rebuild-projection: install ## rebuild the Redis projection from PostgreSQL (the stack's database)
	$(VENV)/bin/tally-projector rebuild

.PHONY: demo
demo: up ## the whole stack: 3 generated photos uploaded by the CLI, live progress, results table
	$(VENV)/bin/tally-synth data/demo --count 3 --seed 1
	@set -e; key=$$($(VENV)/bin/tally admin create-tenant "demo-$$(date +%s)" --json \
	  | $(PY) -c 'import json, sys; print(json.load(sys.stdin)["api_key"])'); \
	TALLY_API_KEY=$$key $(VENV)/bin/tally upload data/demo --watch; \
	echo "API: http://127.0.0.1:$${TALLY_EDGE_PORT:-8080}/v1 (TALLY_API_KEY=$$key)"; \
	echo "dashboard: http://127.0.0.1:$${TALLY_EDGE_PORT:-8080}/ (sign in with that key)"; \
	echo "logs: .run/stack/stack.log; stop everything: make down"

.PHONY: detect
detect: install ## the detector alone: count data/demo's photos through a local Triton (no services)
	$(VENV)/bin/tally-detect data/demo/*.jpg --json data/demo/detections.json

.PHONY: synth
synth: install ## generate 5 sample photos into data/sample (tally-synth OUT_DIR --count N --seed S --size WxH)
	$(VENV)/bin/tally-synth data/sample --count 5 --seed 1

.PHONY: train-model
train-model: torch ## train the detector from scratch (fixed seeds) and export deploy/triton/.../model.onnx
	$(VENV)/bin/tally-train --onnx $(ONNX) --metrics deploy/triton/training_metrics.json

.PHONY: eval-model
eval-model: install ## accuracy through slice → Triton → merge on 20 held-out 4000x3000 photos
	$(VENV)/bin/tally-eval --photos 20 --json deploy/triton/eval_metrics.json

.PHONY: eval-conditions
eval-conditions: install ## the same on 12 held-out 4000x3000 photos of each camera and light condition (far, near, rotated, dim, warm, soft, heavy JPEG)
	$(VENV)/bin/tally-eval --condition all --photos 12 --json deploy/triton/eval_conditions.json

.PHONY: bench-detector
bench-detector: install ## slices/s of the client against raw Triton, and per-photo latency
	$(VENV)/bin/tally-bench-detector

.PHONY: bench-gpu
bench-gpu: install ## on a machine with an NVIDIA GPU: the shipped model's slices/s, raw ONNX Runtime (CUDA, TensorRT) against the same through the client; skips where there is none (under 8 min)
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then \
	  version=$$($(PY) -c 'import onnxruntime; print(onnxruntime.__version__)'); \
	  echo "swapping in onnxruntime-gpu $$version (uv sync puts the CPU build back)"; \
	  $(UV) pip uninstall --python $(PY) onnxruntime && \
	  $(UV) pip install --python $(PY) "onnxruntime-gpu==$$version"; \
	fi
	timeout 480 $(VENV)/bin/tally-bench-gpu $(BENCH_ARGS)

.PHONY: bench-status
bench-status: install servers ## status path under load: polling vs N+1, open-loop polling, SSE fan-out, 10,000 streams on one gateway, end-to-end latency
	$(VENV)/bin/tally-bench-status

.PHONY: bench-abuse
bench-abuse: install servers ## a noisy neighbour: B's poll latency alone and while A floods (big pages, polls, made-up keys) against the rate limits
	$(VENV)/bin/tally-bench-abuse

.PHONY: bench-export
bench-export: install servers ## session exports (CSV, JSON Lines, COCO) of 500 and 5,000 jobs side by side: peak memory and jobs/s
	$(VENV)/bin/tally-bench-export

.PHONY: bench-pipeline
PIPELINE_FIGURES ?= data/bench/pipeline.json
bench-pipeline: install servers ## slices/s of the whole pipeline against raw Triton, CPU per slice by service, beside the last run's (data/bench/pipeline.json; BENCH_ARGS="--photos 8")
	@mkdir -p $(dir $(PIPELINE_FIGURES))
	$(VENV)/bin/tally-bench-pipeline --json $(PIPELINE_FIGURES) $(if $(wildcard $(PIPELINE_FIGURES)),--baseline $(PIPELINE_FIGURES)) $(BENCH_ARGS)

.PHONY: bench-eta
bench-eta: install triton-env servers ## the ETA against the actual finish: sessions of 1, 3, 20, 100 photos alone, with a second tenant, with a detector killed (about 5 min; BENCH_ARGS="--sizes 1,3")
	$(VENV)/bin/tally-bench-eta $(BENCH_ARGS)

.PHONY: triton-up
triton-up: install ## start local CPU Triton in the background on free ports (state in .run/triton)
	$(VENV)/bin/tally-triton up

.PHONY: triton-down
triton-down: ## stop local Triton
	@$(VENV)/bin/tally-triton down

.PHONY: proto
proto: install ## regenerate the committed Python code of proto/tally/v1 (libs/contracts)
	$(PY) scripts/protogen.py

.PHONY: lint
lint: install js-deps ## ruff, mypy --strict, TypeScript on the dashboard's JS, protobuf drift, stale locks, one-way imports, hadolint
	$(UV) lock --check
	$(UV) lock --check --project deploy/triton/env
	$(UV) lock --check --project deploy/images/s3/env
	$(VENV)/bin/hadolint deploy/images/*/Dockerfile
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy libs services tools ml deploy/triton/cpu tests scripts conftest.py
	$(PY) scripts/protogen.py --check
	$(VENV)/bin/lint-imports
	node_modules/.bin/tsc -p tsconfig.json

.PHONY: servers
servers: ## make sure RabbitMQ, PostgreSQL and Redis run on 127.0.0.1; nginx, Chromium and Prometheus are installed
	bash scripts/ensure-servers.sh rabbitmq postgres redis nginx chromium prometheus

.PHONY: unit
unit: install js-test ## the unit tests alone, no server started (under a minute): pytest less the marked ones, and the dashboard's JS
	$(VENV)/bin/pytest -q -m "$(UNIT_MARKERS)" $(UNIT_PATHS)

.PHONY: js-test
js-test: js-deps ## the dashboard's pure JavaScript (rows, back-off, filters, formats) under node --test
	node --test services/gateway/tests/dashboard/

.PHONY: test
test: torch triton-env servers lint images js-test ## everything CI runs: lint (types, JS too), every pytest test (unit, integration, e2e, reliability, browser, containers, deploy, training) and the JS tests
	$(VENV)/bin/pytest

.PHONY: k8s-check
k8s-check: install servers ## deploy/k8s: render the overlays, validate them (k8s 1.32, CRD schemas), policy tests, promtool, the autoscaler's signal on a real Prometheus
	$(VENV)/bin/pytest -s tests/deploy/test_k8s_manifests.py tests/deploy/test_autoscaling_signal.py

.PHONY: docker
docker: ## make sure a Docker engine runs (installs Debian's docker.io and docker-compose, starts dockerd)
	bash scripts/ensure-docker.sh

.PHONY: images
images: docker ## build every image (tally, triton-cpu, edge, s3, rabbitmq, postgres, redis); cached layers
	bash scripts/images.sh

.PHONY: compose-up
compose-up: images ## the whole stack in containers (docker-compose.yml), edge on 127.0.0.1:8090; writes .env first
	bash scripts/compose.sh up -d
	@echo "Tally (compose) is up: http://127.0.0.1:$$(grep -oP '^TALLY_COMPOSE_PORT=\K.*' $${TALLY_COMPOSE_ENV_FILE:-.env} || echo 8090)/"
	@echo "a tenant and its API key: bash scripts/compose.sh run --rm admin create-tenant NAME"

.PHONY: compose-down
compose-down: ## stop the compose stack (data stays in its volumes; `bash scripts/compose.sh down -v` drops them)
	bash scripts/compose.sh down

.PHONY: format
format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.PHONY: clean
clean: triton-down ## remove generated data, caches and run state (keeps the environments)
	rm -rf .run .cache data/sample .pytest_cache .mypy_cache .ruff_cache
