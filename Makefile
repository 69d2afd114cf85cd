# CDX — every target creates .venv and installs the project (with dev extras) when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test ci bench proto lint fuzz up clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cdx demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadscope --timeout 300 $(PYTEST_ARGS)

ci:
	.ci/run

fuzz: $(STAMP)
	CDX_FUZZ_EXAMPLES=20000 $(BIN)/python -m pytest -n 2 tests/security -k fuzz --timeout 3600

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. proto/cdx/v1/*.proto
	$(BIN)/python tools/protodoc.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy cdx registry security_server consent audit notify portal stack

up: $(STAMP)
	$(BIN)/cdx up $(UP_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
