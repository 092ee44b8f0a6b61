# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv and install the pinned stack from constraints.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# Quiet TensorFlow's start-up chatter; keep oneDNN off so CPU results are reproducible.
export TF_CPP_MIN_LOG_LEVEL ?= 2
export TF_ENABLE_ONEDNN_OPTS ?= 0

.PHONY: venv lint test test-fast demo bench notebooks clean

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
	$(PY) -m samples.demo

# Execute the walkthroughs in full mode and store them with their outputs (minutes of CPU each).
notebooks: $(STAMP)
	$(PY) -m notebooks.store

bench: $(STAMP)
	$(PY) -m benchmarks.loss_speed --write
	$(PY) -m benchmarks.train_step --write

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
