# Kefu — every target installs what it needs first (a pinned uv, then the locked dependencies).

PYTHON_BOOT ?= python3
UV_VERSION  := 0.13.9
TOOLS       := .tools
UV          := $(TOOLS)/bin/uv
VENV        := .venv
PY          := $(VENV)/bin/python
SERVICES    := intake tickets briefs analytics
PG_URL      ?= postgresql+asyncpg://postgres@127.0.0.1:5432
AMQP_URL    ?= amqp://guest:guest@127.0.0.1:5672/
RUN_DIR     := data/run

export UV_PYTHON_DOWNLOADS := never

.PHONY: install run up down status test test-unit test-integration test-reliability test-security lint format migrate bench bench-load openapi asyncapi clean

$(UV):
	$(PYTHON_BOOT) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON_BOOT)
	@touch $@

install: $(VENV)/.synced ## create the virtualenv with the locked dependencies

run: install ## the whole platform in one process on :8000 (SQLite, in-process bus)
	$(PY) -m services --port 8000

# The distributed mode: four processes on 8001–8004 against PostgreSQL and RabbitMQ.
up: install
	@mkdir -p $(RUN_DIR)
	$(PY) -m services createdb --url $(PG_URL)
	@for s in $(SERVICES); do \
	  upper=$$(echo $$s | tr a-z A-Z); \
	  env AMQP_URL=$(AMQP_URL) $${upper}_DATABASE_URL=$(PG_URL)/kefu_$$s \
	    nohup $(PY) -m services.$$s > $(RUN_DIR)/$$s.log 2>&1 & echo $$! > $(RUN_DIR)/$$s.pid; \
	  echo "started $$s (pid $$(cat $(RUN_DIR)/$$s.pid), log $(RUN_DIR)/$$s.log)"; \
	done
	$(PY) -m services wait-ready --timeout 60

down:
	@for s in $(SERVICES); do \
	  if [ -f $(RUN_DIR)/$$s.pid ]; then kill $$(cat $(RUN_DIR)/$$s.pid) 2>/dev/null && echo "stopped $$s"; rm -f $(RUN_DIR)/$$s.pid; fi; \
	done

# The suites on the real servers run one test at a time (the reliability ones stop and start them); the
# unit tests, each on its own SQLite files and in-process bus, run on two workers.
test: install ## unit, contract, integration, reliability and security tests (most need PostgreSQL and RabbitMQ)
	$(PY) -m pytest tests/integration tests/reliability tests/security
	$(PY) -m pytest -n 2 tests/unit

test-unit: install
	$(PY) -m pytest -n 2 tests/unit

test-integration: install
	$(PY) -m pytest tests/integration

test-reliability: install ## faults under load; stops and restarts the local RabbitMQ and PostgreSQL
	$(PY) -m pytest tests/reliability

test-security: install
	$(PY) -m pytest tests/security

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrate: install ## migrate every service's database (from <SERVICE>_DATABASE_URL, else data/*.db)
	$(PY) -m services migrate

# Each benchmark prints progress and a JSON line, and saves it as bench/results/<name>.json.
bench: install
	$(PY) -m bench.pipeline --consumer batch
	$(PY) -m bench.contacts
	$(PY) -m bench.sla
	$(PY) -m bench.analytics --quick
	$(PY) -m bench.load

# Mixed traffic on the four services as processes: the step search, then 5 minutes at the best rate.
bench-load: install
	$(PY) -m bench.load

openapi: install ## write each service's OpenAPI document to docs/openapi/
	$(PY) -m services openapi --out docs/openapi

asyncapi: install ## regenerate docs/asyncapi.yaml from the event catalogue
	$(PY) -m services asyncapi --out docs/asyncapi.yaml

clean:
	rm -rf data .pytest_cache .ruff_cache .mypy_cache
