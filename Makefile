# The two commands: `make run` serves the example campaign on 127.0.0.1;
# `make test` runs the test suite. Both set up .venv themselves.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000
# Root installs system packages itself; anyone else goes through sudo.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-fast lint screenshots bench bench-web install install-test translations compile-translations system-test-deps postfix-package clean lock \
  translation-add translation-status

# Every dependency comes from a lock file that pins it with its hashes
# (requirements/*.lock, made by `make lock`): pip refuses a package whose file
# is not the one that was reviewed. Clamor itself is installed without
# dependencies and without build isolation, so nothing unpinned comes in.
PIP_LOCKED := $(BIN)/pip install --quiet --require-hashes --no-deps -r
PIP_LOCAL  := $(BIN)/pip install --quiet --no-deps --no-build-isolation -e

$(BIN)/clamor: setup.cfg pyproject.toml requirements/run.lock
	$(PYTHON) -m venv $(VENV)
	$(PIP_LOCKED) requirements/run.lock
	$(PIP_LOCAL) .
	touch $@

# The example plugin is installed editable, so the tests run the code in
# examples/; its entry point is metadata written at install, hence the
# pyproject.toml prerequisite.
$(VENV)/.test-installed: $(BIN)/clamor examples/clamor-maildir/pyproject.toml requirements/test.lock
	$(PIP_LOCKED) requirements/test.lock
	$(PIP_LOCAL) examples/clamor-maildir
	touch $@

# Refresh the lock files from setup.cfg (newest releases that fit), with
# pip-tools in a throwaway environment. Review the diff, run `make test`, commit.
lock:
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet pip-tools
	.lock-venv/bin/pip-compile --quiet --upgrade --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	  --no-emit-find-links -o requirements/run.lock setup.cfg requirements/build.in
	.lock-venv/bin/pip-compile --quiet --upgrade --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	  --no-emit-find-links --extra test --extra redis -o requirements/test.lock setup.cfg requirements/build.in
	rm -rf .lock-venv

install: $(BIN)/clamor

install-test: $(VENV)/.test-installed

# Plugins that ship their own catalogue (a gettext domain named like the
# plugin's module): plugins/translations/<domain>.pot and
# plugins/translations/<lang>/LC_MESSAGES/<domain>.po. Found by their .pot.
PLUGIN_DOMAINS := $(basename $(notdir $(wildcard plugins/translations/*.pot)))
# The same for a deployment's single-file plugins in instance/plugins/.
INSTANCE ?= instance
INSTANCE_PLUGIN_DOMAINS := $(basename $(notdir $(wildcard $(INSTANCE)/plugins/translations/*.pot)))
# Every catalogue as "folder:domain": the app's, each built-in plugin's, each instance plugin's.
CATALOGUES := translations:messages $(addprefix plugins/translations:,$(PLUGIN_DOMAINS)) \
  $(addprefix $(INSTANCE)/plugins/translations:,$(INSTANCE_PLUGIN_DOMAINS))
# The commands below that only read or write catalogues need .venv, not a fresh install.
NEED_VENV = @test -x $(BIN)/pybabel || { echo "no $(BIN)/pybabel: run \`make install\` once first"; exit 1; }
# tests/test_translations.py extracts with the same options: keep them in step.
EXTRACT := $(BIN)/pybabel extract -k _l -k lazy_gettext -k lazy_ngettext --no-location --sort-output --project=Clamor

# Compiled catalogues (.mo) are build output, made from the .po files here and
# never committed (see docs/translating.md). Fuzzy entries are not compiled.
compile-translations: install
	@for catalogue in $(CATALOGUES); do \
	  $(BIN)/pybabel compile -d $${catalogue%%:*} -D $${catalogue#*:} --statistics || exit 1; \
	done

# Extract strings from the code, merge them into every catalogue, compile.
translations: install
	$(EXTRACT) -F babel.cfg -o translations/messages.pot .
	$(BIN)/pybabel update -i translations/messages.pot -d translations -D messages --ignore-obsolete
	@for domain in $(PLUGIN_DOMAINS); do \
	  $(EXTRACT) -o plugins/translations/$$domain.pot plugins/$$domain.py && \
	  $(BIN)/pybabel update -i plugins/translations/$$domain.pot -d plugins/translations -D $$domain --ignore-obsolete || exit 1; \
	done
	@for domain in $(INSTANCE_PLUGIN_DOMAINS); do \
	  $(EXTRACT) -o $(INSTANCE)/plugins/translations/$$domain.pot $(INSTANCE)/plugins/$$domain.py && \
	  $(BIN)/pybabel update -i $(INSTANCE)/plugins/translations/$$domain.pot -d $(INSTANCE)/plugins/translations \
	    -D $$domain --ignore-obsolete || exit 1; \
	done
	$(MAKE) compile-translations

# A new language: `make translation-add LANG=uk` makes an empty catalogue of
# every domain (the app's, each plugin's) with the language's plural rule.
# A catalogue that exists already is left alone, so running it again after a
# plugin arrived adds only that plugin's.
translation-add:
	@test "$(origin LANG)" = "command line" || { echo "usage: make translation-add LANG=uk (an ISO 639-1 code)"; exit 2; }
	$(NEED_VENV)
	@for catalogue in $(CATALOGUES); do \
	  folder=$${catalogue%%:*}; domain=$${catalogue#*:}; \
	  if [ -e $$folder/$(LANG)/LC_MESSAGES/$$domain.po ]; then \
	    echo "$$folder/$(LANG)/LC_MESSAGES/$$domain.po exists; left as it is"; \
	  else \
	    $(BIN)/pybabel init -i $$folder/$$domain.pot -d $$folder -D $$domain -l $(LANG) || exit 1; \
	  fi; \
	done

# Per language and domain: translated, missing, fuzzy, copied from English.
translation-status:
	$(NEED_VENV)
	$(BIN)/clamor translations

# Links in the mail a local run writes to instance/outbox/ point at this server.
run: export CLAMOR_BASE_URL ?= http://$(HOST):$(PORT)
run: install compile-translations
	$(BIN)/clamor init
	$(BIN)/clamor run --host $(HOST) --port $(PORT)

# Debian's Chromium (for the browser tests), PostgreSQL, Redis, nginx (the
# documented gzip lines), Dovecot, Java (the Nu HTML Checker), Perl (a second
# header decoder) and openssl, when missing; and Postfix (a real MTA).
system-test-deps: postfix-package
	@if [ ! -x /usr/bin/chromium ] || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v openssl >/dev/null || [ ! -x /usr/bin/redis-server ] || [ ! -x /usr/sbin/nginx ] || ! command -v systemd-analyze >/dev/null || [ ! -x /usr/sbin/dovecot ] || ! command -v java >/dev/null || ! perl -MEncode -e 1 2>/dev/null; then \
	  echo "installing chromium, postgresql, redis-server, nginx-light, systemd (for systemd-analyze), dovecot-imapd, default-jre-headless, perl and openssl with apt-get"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium postgresql redis-server nginx-light systemd fonts-dejavu-core openssl dovecot-imapd default-jre-headless perl >/dev/null; \
	fi

# Lint and import order (ruff, configured in pyproject.toml): a finding fails
# `make test` before any test runs. `ruff check --fix .` repairs most of them.
lint: install-test
	$(BIN)/ruff check .

test: install-test compile-translations system-test-deps lint
	$(BIN)/pytest $(PYTEST_ARGS)

# The suite without what is slow or needs a server beyond loopback SMTP and
# HTTP: the fault tests (marked slow), Chromium, PostgreSQL and Redis.
# Under a minute; `make test` before a submission still runs everything.
test-fast: install-test compile-translations lint
	$(BIN)/pytest -m "not slow and not browser and not postgres and not redis" $(PYTEST_ARGS)

# docs/screenshot-*.png, taken by the browser tests in Chromium.
screenshots: install-test compile-translations system-test-deps
	UPDATE_SCREENSHOTS=1 $(BIN)/pytest tests/test_browser.py

# Debian's postfix: smtp-sink for bench/delivery.py, and the Postfix that
# tests/test_postfix.py starts with a configuration of its own. The system's
# Postfix is never started: "No configuration" leaves it without a main.cf.
postfix-package:
	@if [ ! -x /usr/sbin/postfix ] || [ ! -x /usr/sbin/smtp-sink ]; then \
	  echo "installing postfix with apt-get (the system's Postfix stays unconfigured)"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | $(SUDO) debconf-set-selections && \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends postfix >/dev/null; \
	fi

# bench/delivery.py against Postfix's smtp-sink.
bench: install-test compile-translations postfix-package
	$(BIN)/python bench/delivery.py $(BENCH_ARGS)

# bench/web.py: page views, signing, the dashboard at a million rows, worker
# memory, as ratios against baselines run alongside. Needs wrk (apt-get).
bench-web: install
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends wrk >/dev/null; }
	PYTHONPATH=. $(BIN)/python bench/web.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
