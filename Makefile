# Two entry points: `make demo` and `make test`. Both create .venv if needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench bench-check clean

# Reinstall (and recompile the validation kernel) when the build inputs change.
$(STAMP): pyproject.toml setup.py src/treeshard/_kernels.pyx
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench,peers,s3,http,dask]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Benchmarks (see BENCHMARKS.md). `make bench` builds the cached reference models
# (once; $$TREESHARD_BENCH_CACHE, default ~/.cache/treeshard-bench), runs the asv
# suite against .venv and writes the HTML report to .asv/html.
# Quicker: make bench BENCH_MODELS=RF-L,GB-M ASV_ARGS=--quick
BENCH_MODELS ?= RF-L,GB-M,RF-XL
ASV_ARGS ?=
bench: $(STAMP)
	TREESHARD_BENCH_MODELS=$(BENCH_MODELS) $(BIN)/python benchmarks/models.py build
	$(BIN)/asv machine --yes
	TREESHARD_BENCH_MODELS=$(BENCH_MODELS) $(BIN)/asv run --set-commit-hash $$(git rev-parse HEAD) $(ASV_ARGS)
	$(BIN)/asv publish

# Cheap: `treeshard bench` on a tiny model, the asv suite run once in-process, `asv check`.
bench-check: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_bench.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .hypothesis src/treeshard/_kernels.c src/treeshard/*.so
