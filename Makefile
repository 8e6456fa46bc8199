# The two commands a new machine needs: `make run` and `make test`.
# Both create the virtualenv in .venv first, installing the package with the
# test extras; the install is redone only when the packaging changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench docs venv clean

venv: $(STAMP)

# The C fast path is compiled in place at install: rebuild when its source changes.
$(STAMP): setup.cfg setup.py pyproject.toml $(wildcard jsonproto/core/_*.c jsonproto/core/_*.h)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	# compat mode: a plain editable install hides twisted/plugins from twistd.
	$(BIN)/python -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	touch $@

run: $(STAMP)
	$(BIN)/twistd --pidfile= -n jsonproto --port tcp:3001:interface=127.0.0.1 --echo tcp:3000:interface=127.0.0.1

test: $(STAMP)
	$(BIN)/python -m twisted.trial tests

clean:
	rm -rf $(VENV) build dist *.egg-info _trial_temp docs/_build twisted/plugins/dropin.cache

bench: $(STAMP)
	$(BIN)/python bench/run.py

$(VENV)/.docs: $(STAMP) setup.cfg
	$(BIN)/python -m pip install --quiet -e '.[docs]' --config-settings editable_mode=compat
	touch $@

# HTML in docs/_build/html; any warning fails the build. -E: read every page
# afresh, so a change to conf.py (the docstring rendering) always shows.
docs: $(VENV)/.docs
	$(BIN)/python -m sphinx -E -W --keep-going -b html -q docs docs/_build/html
