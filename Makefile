# Developer entry points. A fresh machine needs Python 3.11, Node 20 and npm; `make setup` installs
# everything else into .venv/ and node_modules/ (again only when the requirement files change).
#
#   make run     Azurite + maildev + the self-hosted runtime on 127.0.0.1 (Ctrl-C stops all;
#                the runtime is restarted if it dies)
#   make fhir-demo  a demo FHIR server on 127.0.0.1:8080 to export from (beside make run)
#   make partner-dav  a WebDAV server on 127.0.0.1:8081 (files in .state/partner-dav) that
#                make run's demo auto-export sends sessions to (beside make run)
#   make test    the whole test suite (tests start their own servers on free ports)
#   make lint    ruff + mypy
#   make bench   benchmarks (bench/*.py; each prints ratios against a baseline)
#   make package the deployment zip (dist/bulk-export.zip, honouring .funcignore);
#                `make package-check` also installs requirements.txt alone and checks the bindings
#   make settings-reference  regenerate docs/settings.md (the configuration reference)
#   make service-install     the one-machine service under systemd (SERVICE_SCOPE=user|system);
#                service-status, service-start, service-stop, service-logs, service-uninstall
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
PARTNER_DAV_PORT ?= 8081
# The app's packages that hold Python files yet (mypy refuses an empty folder).
MYPY_PATHS ?= function_app.py $(patsubst %/,%,$(sort $(dir $(wildcard \
	http_api/*.py control/*.py orchestrators/*.py activities/*.py shared/*.py selfhost/*.py scripts/*.py cli/*.py))))

# Stamps record that an install finished for the current requirement files; an interrupted
# install leaves no stamp, so the next `make` retries it.
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

# The one-machine service: a user unit by default (no root); SERVICE_SCOPE=system needs root.
SERVICE_SCOPE ?= user
SERVICE = $(PY) -m scripts.service

.PHONY: help setup run fhir-demo partner-dav test lint bench clean distclean package package-check settings-reference \
	service-install service-status service-start service-stop service-logs service-uninstall

help:
	@sed -n '/^$$/q; s/^# \{0,1\}//p' Makefile

setup: $(PY_STAMP) $(NODE_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(PY_STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml | $(PY)
	$(PY) -m pip install --disable-pip-version-check --quiet -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --disable-pip-version-check --quiet --no-deps -e .
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

run: setup
	exec $(PY) -m scripts.devservers run \
		--state-dir "$(STATE_DIR)" \
		--runtime-port $(RUNTIME_PORT) \
		--azurite-blob-port $(AZURITE_BLOB_PORT) \
		--azurite-queue-port $(AZURITE_QUEUE_PORT) \
		--azurite-table-port $(AZURITE_TABLE_PORT) \
		--maildev-smtp-port $(MAILDEV_SMTP_PORT) \
		--maildev-web-port $(MAILDEV_WEB_PORT)

# The browser tests (tests/web/) drive Debian's chromium through playwright's executable_path
# (`playwright install` downloads browsers, which cannot be reached here): installed with apt when
# missing (sudo unless root), for `make test` only, so those tests never skip on a fresh machine.
CHROMIUM ?= /usr/bin/chromium

.PHONY: browser
browser:
	@command -v $(CHROMIUM) >/dev/null 2>&1 || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		echo "installing Debian's chromium (for the browser tests)"; \
		apt="$$sudo env DEBIAN_FRONTEND=noninteractive apt-get"; \
		$$apt install -y --no-install-recommends chromium \
		|| { $$apt update && $$apt install -y --no-install-recommends chromium; }; }

# pytest's own exit codes pass through: 1 failures, 5 no test collected (also a failure here:
# the suite must run real tests).
test: setup browser
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

partner-dav: setup
	exec $(PY) -m tests.support.webdav_server --port $(PARTNER_DAV_PORT) --root "$(STATE_DIR)/partner-dav"

bench: setup
	@test -n "$(strip $(BENCH))" || { echo "no benchmark in bench/" >&2; exit 1; }
	@for name in $(BENCH); do echo "== bench.$$name"; $(PY) -m bench.$$name $(BENCH_ARGS) || exit 1; done

package: setup
	$(PY) -m scripts.package

package-check: setup
	$(PY) -m scripts.package --check

settings-reference: setup
	$(PY) -m scripts.settings_reference --write

# The service's ports are `make run`'s: make service-install RUNTIME_PORT=7072 ...
service-install: setup
	$(SERVICE) install --scope $(SERVICE_SCOPE) --runtime-port $(RUNTIME_PORT) \
		--azurite-blob-port $(AZURITE_BLOB_PORT) --azurite-queue-port $(AZURITE_QUEUE_PORT) \
		--azurite-table-port $(AZURITE_TABLE_PORT) --maildev-smtp-port $(MAILDEV_SMTP_PORT) \
		--maildev-web-port $(MAILDEV_WEB_PORT)

service-status service-start service-stop service-logs service-uninstall:
	$(SERVICE) $(patsubst service-%,%,$@) --scope $(SERVICE_SCOPE)

clean:
	rm -rf "$(STATE_DIR)" .selfhost .pytest_cache .mypy_cache .ruff_cache .hypothesis bench/results .cache dist
	find . -name __pycache__ -type d -not -path './.venv/*' -not -path './node_modules/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) node_modules
