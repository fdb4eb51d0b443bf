SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
GEN := gen
PROTO_FILES := $(shell find protos -name '*.proto')
GOOGLEAPIS = $(shell $(PY) -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))')
GRPC_TOOLS = $(shell $(PY) -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')

.PHONY: help venv protos openapi run test test-unit test-integration test-e2e lint bench clean

help:  ## List targets.
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	# xds-protos carries an older copy of OpenTelemetry's protos under the same package path: whichever pip
	# installed last wins. OpenTelemetry's own must, or its exporter cannot import them.
	$(PY) -m pip install --quiet --force-reinstall --no-deps \
	  "opentelemetry-proto==$$($(PY) -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')"
	$(PY) -c 'import site, os; open(os.path.join(site.getsitepackages()[0], "hydra_gen.pth"), "w").write(os.path.abspath("$(GEN)/python") + "\n")'
	touch $@

venv: $(VENV)/.installed  ## Create the virtualenv and install dependencies.

$(GEN)/.stamp: $(VENV)/.installed $(PROTO_FILES)
	rm -rf $(GEN) && mkdir -p $(GEN)/python
	$(PY) -m grpc_tools.protoc -Iprotos -I$(GOOGLEAPIS) -I$(GRPC_TOOLS) \
	  --plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy \
	  --plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc \
	  --python_out=$(GEN)/python --grpc_python_out=$(GEN)/python \
	  --mypy_out=$(GEN)/python --mypy_grpc_out=$(GEN)/python $(PROTO_FILES)
	touch $(GEN)/python/hydra/py.typed  # mypy reads a package found on the path only when it says it is typed
	$(PY) -m grpc_tools.protoc -Iprotos -I$(GOOGLEAPIS) -I$(GRPC_TOOLS) --include_imports --include_source_info \
	  --descriptor_set_out=$(GEN)/hydra.pb $(PROTO_FILES)
	touch $@

protos: $(GEN)/.stamp  ## Generate Python stubs and the Envoy descriptor set into gen/.

openapi: protos  ## Rewrite docs/openapi.yaml, the committed copy of the API document, from the protos.
	$(PY) -m edge.openapi

run: protos  ## Start everything on embedded defaults and print a ready API key.
	$(VENV)/bin/hydractl migrate
	$(VENV)/bin/hydractl up --demo

test: protos  ## Run unit, integration and end-to-end tests (PostgreSQL and Redis included).
	$(PY) -m pytest tests --durations=15  # the slowest, so the suite's time stays in sight

test-unit: protos
	$(PY) -m pytest tests/unit

test-integration: protos
	$(PY) -m pytest tests/integration

test-e2e: protos
	$(PY) -m pytest tests/e2e

lint: protos  ## ruff check, ruff format --check, mypy (against the generated stubs).
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy services edge hydractl testbed

bench: protos  ## Benchmarks through the full edge on PostgreSQL + Redis (prints figures).
	$(PY) -m bench.edge
	$(PY) -m bench.edge --rate 500 --case "POST /api/v1/tickets"
	$(PY) -m bench.services
	$(PY) -m bench.checks
	$(PY) -m bench.widget
	$(PY) -m bench.observability

clean:
	rm -rf $(GEN) .hydra
