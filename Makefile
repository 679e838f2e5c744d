# Every target works on a fresh Debian/Ubuntu machine with Python 3.11+, make and apt.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: test lint demo bench venv system-deps bench-deps bootstrap-ci clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# Debian packages the tests and the demo run for real: Pebble (Let's Encrypt's test CA) and BIND 9;
# the benchmark adds lego to measure it beside us.
system-deps:
	@scripts/install-system-deps.sh

bench-deps:
	@scripts/install-system-deps.sh --bench

# Lint and types first (seconds), then the tests. Any non-zero exit fails the target, pytest's 5
# ("no tests collected") included.
test: venv system-deps lint
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

demo: venv system-deps
	$(PY) -m demo

bench: venv bench-deps
	$(PY) -m tests.bench

# A workload's CI/CD setup (federated credentials, repository variables) from its stack file, printed as a bash
# script to review; add --apply to ARGS to run it with a signed-in az and gh. README "One-time setup" has an example.
bootstrap-ci: venv
	$(PY) -m keyvault_acme_cli.bootstrap_ci --stack $(STACK) $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
