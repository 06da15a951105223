# Two commands on a fresh machine:  make serve  (the gateway on the embedded
# default)  and  make test  (the whole test suite). Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test,fast]'
	touch $@

.PHONY: serve test lint bench
serve: $(VENV)/.installed
	$(VENV)/bin/intake serve

test: $(VENV)/.installed
	$(VENV)/bin/pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check gateway storage parsers routing tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/smtp_intake.py
	$(VENV)/bin/python benchmarks/http_intake.py
	$(VENV)/bin/python benchmarks/form_intake.py
