# The two commands a new machine needs: `make run` and `make test`.
# Both create the virtualenv in .venv first, installing the package with the
# test extras; the install is redone only when the packaging changes.
#
# The other environments CI tests, each in a virtualenv of its own:
#   make test-no-speedups     the suite with the compiled core switched off
#   make test-py310           on Python 3.10 (PY310=/path/to/python3.10)
#   make test-py313           on Python 3.13 (PY313=/path/to/python3.13)
#   make test-oldest-twisted  on the oldest Twisted setup.cfg allows, run by
#                             the oldest Python it allows (3.10) when found
#   make typecheck            mypy over the package
#
# TRIALFLAGS= runs the tests in one process (the default is -j2).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Extra requirements installed beside the package, e.g. a Twisted pin.
PIN ?=
# How the virtualenv's python runs trial: Twisted before 23.8 runs
# "python -m twisted.trial" through pkg_resources, which setuptools no
# longer has.
TRIAL ?= -m twisted.trial
# trial's options: by default the tests run in two processes (-j2), which
# halves the suite's time on two cores or more.
TRIALFLAGS ?= -j2

# A Python of that version that runs: installed by pyenv, or on PATH.
findpython = $(shell for p in $$(ls -d $$(pyenv root 2>/dev/null)/versions/$(1).*/bin/python$(1) 2>/dev/null | sort -V | tail -n 1) $$(command -v python$(1)); do "$$p" -c "" 2>/dev/null && { echo "$$p"; break; }; done)
PY310 ?= $(call findpython,3.10)
PY313 ?= $(call findpython,3.13)
OLDEST_TWISTED := $(shell sed -n 's/^ *twisted\[tls\] *>= *\([0-9.]*\).*python_version < "3.13".*/\1/p' setup.cfg)

.PHONY: run test test-no-speedups test-py310 test-py313 test-oldest-twisted typecheck bench docs venv clean

venv: $(STAMP)

# The install builds the compiled core in place (where a C compiler is at
# hand); it is rebuilt whenever a compiled module or its .pxd changes, so that
# the tests never run a stale twin of the code beside it.
COMPILED_SOURCES := $(wildcard jsonproto/*/*.pxd) $(patsubst %.pxd,%.py,$(wildcard jsonproto/*/*.pxd))
BUILT := $(VENV)/.built

$(STAMP): setup.cfg setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	# compat mode: a plain editable install hides twisted/plugins from twistd.
	$(BIN)/python -m pip install --quiet -e '.[test]' $(PIN) --config-settings editable_mode=compat
	touch $@

$(BUILT): $(STAMP) $(COMPILED_SOURCES)
	$(BIN)/python setup.py -q build_ext --inplace --parallel 2
	touch $@

run: $(BUILT)
	$(BIN)/twistd --pidfile= -n jsonproto --port tcp:3001:interface=127.0.0.1 --echo tcp:3000:interface=127.0.0.1

test: $(BUILT)
	$(BIN)/python $(TRIAL) $(TRIALFLAGS) tests

test-no-speedups:
	JSONPROTO_NO_SPEEDUPS=1 $(MAKE) test

test-py310:
	@test -n "$(PY310)" || { echo "Python 3.10 not found (set PY310=...)"; exit 1; }
	$(MAKE) test PYTHON=$(PY310) VENV=.venv-py310

test-py313:
	@test -n "$(PY313)" || { echo "Python 3.13 not found (set PY313=...)"; exit 1; }
	$(MAKE) test PYTHON=$(PY313) VENV=.venv-py313

# setup.cfg's two lower bounds in one environment: the oldest Twisted on the
# oldest Python (CI has no other Python 3.10 stage).  Without a Python 3.10
# it runs on $(PYTHON).
OLDEST_PYTHON = $(or $(PY310),$(PYTHON))
test-oldest-twisted:
	$(MAKE) test PYTHON=$(OLDEST_PYTHON) VENV=.venv-oldest-twisted-$(OLDEST_TWISTED) PIN="'twisted[tls]==$(OLDEST_TWISTED)'" \
		TRIAL='-c "import sys; sys.argv[0] = \"trial\"; from twisted.scripts.trial import run; run()"'

clean:
	rm -rf .venv .venv-* build dist *.egg-info _trial_temp* docs/_build twisted/plugins/dropin.cache

bench: $(BUILT)
	$(BIN)/python bench/run.py $(ARGS)

$(VENV)/.typecheck: $(STAMP) setup.cfg
	$(BIN)/python -m pip install --quiet -e '.[typecheck]' --config-settings editable_mode=compat
	touch $@

# mypy, with zope.interface's plugin, over what setup.cfg's [mypy] names.
typecheck: $(VENV)/.typecheck
	$(BIN)/python -m mypy

$(VENV)/.docs: $(STAMP) setup.cfg
	$(BIN)/python -m pip install --quiet -e '.[docs]' --config-settings editable_mode=compat
	touch $@

# HTML in docs/_build/html; any warning fails the build. -E: read every page
# afresh, so a change to conf.py (the docstring rendering) always shows.
docs: $(VENV)/.docs
	$(BIN)/python -m sphinx -E -W --keep-going -b html -q docs docs/_build/html
