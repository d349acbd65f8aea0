# Two entry points: `make demo` and `make test`. Both create .venv if needed.
# `demo` installs the package and joblib only; `test` adds the extras the suite uses.
# constraints.txt fixes every version, so pip never backtracks while resolving.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install -q -c constraints.txt
BUILD_INPUTS := pyproject.toml setup.py src/treeshard/_kernels.pyx constraints.txt
DEMO_STAMP := $(VENV)/.demo-stamp
TEST_STAMP := $(VENV)/.test-stamp

.PHONY: demo test test-sklearn compat bench bench-check constraints clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall (and recompile the validation kernel) when the build inputs change.
$(DEMO_STAMP): $(BUILD_INPUTS) | $(BIN)/python
	$(PIP) -e . joblib
	touch $(DEMO_STAMP)

$(TEST_STAMP): $(BUILD_INPUTS) | $(BIN)/python
	$(PIP) -e '.[test,bench,peers,sign,s3,http,dask]'
	touch $(DEMO_STAMP) $(TEST_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python examples/demo.py

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q

# scikit-learn's own tests with every top-level fit round-tripped through treeshard,
# eager then lazy (README, Development; tests/sklearn_suite/roundtrip_plugin.py).
# CI: make test-sklearn SKLEARN_MODES=eager SKLEARN_SUITES="sklearn.ensemble.tests.test_gradient_boosting sklearn.tree.tests.test_tree"
SKLEARN_SUITES ?= sklearn.ensemble.tests.test_forest sklearn.ensemble.tests.test_gradient_boosting sklearn.tree.tests.test_tree \
	sklearn.ensemble._hist_gradient_boosting.tests.test_gradient_boosting sklearn.ensemble.tests.test_iforest
SKLEARN_MODES ?= eager lazy
SKLEARN_PYTEST := PYTHONPATH=tests/sklearn_suite$${PYTHONPATH:+:$$PYTHONPATH} $(BIN)/python -m pytest -c tests/sklearn_suite/pytest.ini -q
test-sklearn: $(TEST_STAMP)
	for mode in $(SKLEARN_MODES); do \
		$(SKLEARN_PYTEST) --treeshard-$$mode --pyargs $(SKLEARN_SUITES) || exit 1; \
	done

# The cross-version matrix (docs/COMPATIBILITY.md): one virtualenv per sklearn minor in
# $$TREESHARD_COMPAT_CACHE (default ~/.cache/treeshard-compat, reused), golden stores of
# each version in tests/golden/<version>/ (written once, committed), every store read
# under every version. CI: make compat COMPAT_VERSIONS=1.3.2,1.9.1
COMPAT_VERSIONS ?= $(shell awk '!/^\#/ && NF {print $$1}' tests/compat/versions.txt | paste -sd, -)
compat:
	$(PYTHON) tests/compat/run.py --versions $(COMPAT_VERSIONS)

# Benchmarks (see BENCHMARKS.md). `make bench` builds the cached reference models
# (once; $$TREESHARD_BENCH_CACHE, default ~/.cache/treeshard-bench), runs the asv
# suite against .venv and writes the HTML report to .asv/html.
# Quicker: make bench BENCH_MODELS=RF-L,GB-M ASV_ARGS=--quick
BENCH_MODELS ?= RF-L,GB-M,RF-XL
ASV_ARGS ?=
bench: $(TEST_STAMP)
	TREESHARD_BENCH_MODELS=$(BENCH_MODELS) $(BIN)/python benchmarks/models.py build
	$(BIN)/asv machine --yes
	TREESHARD_BENCH_MODELS=$(BENCH_MODELS) $(BIN)/asv run --set-commit-hash $$(git rev-parse HEAD) $(ASV_ARGS)
	$(BIN)/asv publish

# Cheap: `treeshard bench` on a tiny model, the asv suite run once in-process, `asv check`.
bench-check: $(TEST_STAMP)
	$(BIN)/python -m pytest -q tests/test_bench.py

# Re-pin constraints.txt from a fresh resolution of every extra (run after editing dependencies).
constraints:
	rm -rf /tmp/treeshard-constraints && $(PYTHON) -m venv /tmp/treeshard-constraints
	/tmp/treeshard-constraints/bin/python -m pip install -q --upgrade pip
	/tmp/treeshard-constraints/bin/python -m pip install -q -e '.[test,bench,peers,sign,s3,http,dask]'
	{ sed -n '1,/^# Regenerate/p' constraints.txt; /tmp/treeshard-constraints/bin/python -m pip freeze --exclude-editable | grep -iv '^treeshard'; } > constraints.new
	mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .hypothesis src/treeshard/_kernels.c src/treeshard/*.so
