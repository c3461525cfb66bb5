# The two commands: `make run` serves the example campaign on 127.0.0.1;
# `make test` runs the test suite. Both set up .venv themselves.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000
# Root installs system packages itself; anyone else goes through sudo.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test install install-test translations compile-translations system-test-deps clean

$(BIN)/clamor: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: $(BIN)/clamor
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/clamor

install-test: $(VENV)/.test-installed

# Compiled catalogues (.mo) are build output, made from the .po files here.
compile-translations: install
	$(BIN)/pybabel compile --use-fuzzy -d translations -D messages --statistics 2>&1 | tail -n 4

# Extract strings from the code, merge them into every catalogue, compile.
translations: install
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -o translations/messages.pot --no-location --sort-output --project=Clamor .
	$(BIN)/pybabel update -i translations/messages.pot -d translations -D messages --no-wrap --ignore-obsolete
	$(MAKE) compile-translations

run: install compile-translations
	$(BIN)/clamor init
	$(BIN)/clamor run --host $(HOST) --port $(PORT)

# Debian's Chromium (for the browser tests) and PostgreSQL, when missing.
system-test-deps:
	@if [ ! -x /usr/bin/chromium ] || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "installing chromium and postgresql with apt-get"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium postgresql fonts-dejavu-core >/dev/null; \
	fi

test: install-test compile-translations system-test-deps
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
