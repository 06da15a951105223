# Two commands on a fresh machine:  make serve  (the gateway on the embedded
# default)  and  make test  (the whole test suite). Both set up .venv first:
# serve with the runtime dependencies alone, test with the test extras too
# (pytest, Playwright, Schemathesis, mypy), each step with its own stamp.
PYTHON ?= python3
VENV ?= .venv

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet -e '.[fast]'
	touch $@

$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet -e '.[test,fast]'
	touch $@

.PHONY: serve test lint bench
serve: $(VENV)/.runtime
	$(VENV)/bin/intake serve

test: $(VENV)/.test
	$(VENV)/bin/pytest

lint: $(VENV)/.test
	$(VENV)/bin/ruff check gateway storage parsers routing tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(VENV)/.test
	$(VENV)/bin/python benchmarks/smtp_intake.py
	$(VENV)/bin/python benchmarks/http_intake.py
	$(VENV)/bin/python benchmarks/form_intake.py
