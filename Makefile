# Developer entry points. A fresh machine needs Python 3.11, Node 20 and npm; `make setup` installs
# everything else into .venv/ and node_modules/ (again only when the requirement files change).
#
#   make run     Azurite + maildev + the self-hosted runtime on 127.0.0.1 (Ctrl-C stops all)
#   make fhir-demo  a demo FHIR server on 127.0.0.1:8080 to export from (beside make run)
#   make test    the whole test suite (tests start their own servers on free ports)
#   make lint    ruff + mypy
#   make bench   benchmarks (bench/*.py; each prints ratios against a baseline)
#   make clean   local state and caches; `make distclean` also removes .venv/ and node_modules/

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

# `make run` ports and state; override on the command line: make run RUNTIME_PORT=7072
RUNTIME_PORT ?= 7071
AZURITE_BLOB_PORT ?= 10000
AZURITE_QUEUE_PORT ?= 10001
AZURITE_TABLE_PORT ?= 10002
MAILDEV_SMTP_PORT ?= 1025
MAILDEV_WEB_PORT ?= 1080
STATE_DIR ?= .state

# Extra arguments: make test PYTEST_ARGS="-m unit -x"; make bench BENCH=runtime BENCH_ARGS="--repeat 1"
PYTEST_ARGS ?=
BENCH ?= $(sort $(basename $(notdir $(filter-out bench/__init__.py bench/__main__.py,$(wildcard bench/*.py)))))
BENCH_ARGS ?=
FHIR_DEMO_PORT ?= 8080
# The app's packages that hold Python files yet (mypy refuses an empty folder).
MYPY_PATHS ?= function_app.py $(patsubst %/,%,$(sort $(dir $(wildcard \
	http_api/*.py control/*.py orchestrators/*.py activities/*.py shared/*.py selfhost/*.py scripts/*.py))))

# Stamps record that an install finished for the current requirement files; an interrupted
# install leaves no stamp, so the next `make` retries it.
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: help setup run fhir-demo test lint bench clean distclean

help:
	@sed -n '/^$$/q; s/^# \{0,1\}//p' Makefile

setup: $(PY_STAMP) $(NODE_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(PY_STAMP): requirements.txt requirements-dev.txt constraints.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check --quiet -r requirements-dev.txt -c constraints.txt
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

run: setup
	exec $(PY) scripts/devservers.py run \
		--state-dir "$(STATE_DIR)" \
		--runtime-port $(RUNTIME_PORT) \
		--azurite-blob-port $(AZURITE_BLOB_PORT) \
		--azurite-queue-port $(AZURITE_QUEUE_PORT) \
		--azurite-table-port $(AZURITE_TABLE_PORT) \
		--maildev-smtp-port $(MAILDEV_SMTP_PORT) \
		--maildev-web-port $(MAILDEV_WEB_PORT)

# pytest's own exit codes pass through: 1 failures, 5 no test collected (also a failure here:
# the suite must run real tests).
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# Both linters always run, so one report shows every problem; the target fails if either does.
lint: setup
	@status=0; \
	echo "ruff check ."; $(PY) -m ruff check . || status=1; \
	echo "mypy $(MYPY_PATHS)"; $(PY) -m mypy $(MYPY_PATHS) || status=1; \
	exit $$status

# Every bench/<name>.py module runs as `python -m bench.<name>`; each prints its ratios.
# A demo FHIR source for `make run` (its default EXPORT_DEFAULT_FHIR_BASE_URL): generated data.
fhir-demo: setup
	exec $(PY) -m tests.support.fhir_server --port $(FHIR_DEMO_PORT)

bench: setup
	@test -n "$(strip $(BENCH))" || { echo "no benchmark in bench/" >&2; exit 1; }
	@for name in $(BENCH); do echo "== bench.$$name"; $(PY) -m bench.$$name $(BENCH_ARGS) || exit 1; done

clean:
	rm -rf "$(STATE_DIR)" .selfhost .pytest_cache .mypy_cache .ruff_cache .hypothesis bench/results
	find . -name __pycache__ -type d -not -path './.venv/*' -not -path './node_modules/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) node_modules
