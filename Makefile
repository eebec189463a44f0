# Kenpin: `make run` starts the console at http://127.0.0.1:8000, `make test` runs the suite.
# Both set up what is missing first (a virtual environment with the pinned requirements).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint browser migrate clean

run: $(VENV)/.runtime
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py serve

test: $(VENV)/.test browser
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff.toml: the lint rules and the formatting every commit keeps.
lint: $(VENV)/.test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	touch $@

$(VENV)/.runtime: requirements.txt requirements/serving.txt requirements/training.txt $(VENV)/.created
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.test: requirements-test.txt $(VENV)/.runtime
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

# Browser tests drive Debian's Chromium; `playwright install` cannot download browsers here.
# Installed with apt-get where this user may; otherwise say how, and let the suite run (the
# browser tests then fail with the same advice).
browser:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "make browser: the browser tests need Chromium at /usr/bin/chromium, which could not be installed here. On Debian or Ubuntu run: sudo apt-get install -y chromium" >&2

clean:
	rm -rf $(VENV)
