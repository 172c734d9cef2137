# Tanso: `make run` serves the product on http://localhost:8080, `make test`
# runs the whole suite. Both bootstrap a virtualenv on their first call.
# Without DATABASE_URL / REDIS_URL they start an embedded PostgreSQL and Redis
# whose data lives under .data/ (git-ignored, reused on the next run).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test bench manage lint format typecheck lock clean-data install check-python

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)' 2>/dev/null || { \
	  echo "Tanso needs Python 3.12, but '$(PYTHON)' is $$($(PYTHON) --version 2>&1)."; \
	  echo "Install Python 3.12 and run: make PYTHON=/path/to/python3.12 <target>"; exit 1; }

$(STAMP): | check-python
	@if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)'; then \
	  echo "Replacing $(VENV): it was not made with Python 3.12"; rm -rf $(VENV); fi
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m tanso.devservices run

test: $(STAMP)
	$(PY) -m tanso.devservices test $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m tanso.devservices bench $(BENCH_ARGS)

# Any management command against the same PostgreSQL and Redis as `make run` (those of
# a running `make run`, else started for the command): make manage ARGS="createsuperuser"
manage: $(STAMP)
	$(PY) -m tanso.devservices manage $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(STAMP)
	TANSO_ENV=development $(VENV)/bin/mypy
	cd sdk/python && $(abspath $(VENV))/bin/mypy  # the SDK: strict, for Python 3.10+

# Re-resolve the pins in pyproject.toml into requirements.lock.
lock: check-python
	rm -rf /tmp/tanso-lock && $(PYTHON) -m venv /tmp/tanso-lock
	/tmp/tanso-lock/bin/pip install --quiet --upgrade pip
	/tmp/tanso-lock/bin/pip install --quiet -e '.[dev]'
	/tmp/tanso-lock/bin/pip freeze --exclude-editable | grep -v '^tanso' > requirements.lock

clean-data:
	rm -rf .data
