# `make run` and `make test` are the two commands; see README.md.
SHELL := /bin/bash
PYTHON ?= python3
PORT ?= 8000
HOST ?= 127.0.0.1
UV_VERSION := 0.13.9
UV := .tools/bin/uv
PY := .venv/bin/python

.PHONY: run test test-mode deps chromium lint format bench messages clean

# uv installs the locked environment; it is bootstrapped into .tools/ with pip so
# nothing has to be installed by hand first.
$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --quiet --python "$$(command -v $(PYTHON))"
	@touch $@

deps: .venv/.synced

run: deps
	@mkdir -p var
	@$(PY) manage.py migrate --noinput -v 0
	@$(PY) manage.py seed_demo --origin http://$(HOST):$(PORT) --origin http://localhost:$(PORT) \
		--base-url http://$(HOST):$(PORT)
	$(PY) -m uvicorn helpdesk.asgi:application --host $(HOST) --port $(PORT) \
		--lifespan off --ws websockets-sansio

test: test-mode deps chromium
	$(PY) -m pytest $(PYTEST_ARGS)

test-mode:
	@db=SQLite; layer=in-memory; \
	[ -n "$$DATABASE_URL" ] && db="PostgreSQL (DATABASE_URL)"; \
	[ -n "$$REDIS_URL" ] && layer="Redis (REDIS_URL)"; \
	if [ -z "$$DATABASE_URL$$REDIS_URL" ]; then \
		echo "make test: on the embedded defaults (SQLite, in-memory channel layer); set DATABASE_URL and REDIS_URL for PostgreSQL and Redis"; \
	else \
		echo "make test: on $$db and the $$layer channel layer"; \
	fi

# Browser tests drive Debian's Chromium; Playwright cannot download its own browser here.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "Installing Chromium from Debian's packages..."; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "Chromium is missing: run 'sudo apt-get install chromium' once"; exit 1; \
		fi; \
	fi

lint: deps
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: deps
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

bench: deps
	$(PY) bench/first_token.py
	$(PY) bench/retrieval.py
	$(PY) bench/prompt_tokens.py
	$(PY) bench/clustering.py
	@# The analytics benchmarks create (and drop) their own databases on a PostgreSQL server.
	@if [[ "$$DATABASE_URL" == postgres* ]]; then \
		$(PY) bench/aggregation.py && $(PY) bench/dashboard.py; \
	else echo "bench/aggregation.py, bench/dashboard.py: skipped, DATABASE_URL is not PostgreSQL"; fi

messages: deps
	$(PY) manage.py makemessages -l zh_Hans --ignore=.venv --ignore=.tools --ignore=var
	$(PY) manage.py compilemessages -l zh_Hans --ignore=.venv --ignore=.tools

clean:
	rm -rf .venv .tools
