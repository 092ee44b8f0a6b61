# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv and install the pinned stack from constraints.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# Keep oneDNN off so CPU results are reproducible. (TensorFlow's C++ log lines are kept quiet by
# mrcnn_ohem._compat.quiet_tensorflow in every command line; exporting TF_CPP_MIN_LOG_LEVEL here
# would count as the user's own choice and show them.)
export TF_ENABLE_ONEDNN_OPTS ?= 0

.PHONY: venv lint test test-fast demo bench clean

venv: $(STAMP)

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip>=24"
	$(PIP) install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

demo: $(STAMP)
	$(PY) samples/snippet_defects.py
	$(PY) samples/demo.py

bench: $(STAMP)
	$(PY) -m benchmarks.loss_speed --write
	$(PY) -m benchmarks.train_step --write

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
