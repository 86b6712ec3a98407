# The two commands a newcomer needs: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, pinned: pip takes the CPU build of 2.13.0 from this machine's disk in seconds, while a range
# resolved by pip inside `pip install -e .` could pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
PYTEST_ARGS ?= -n 2

.PHONY: demo test install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[cpu,dev,nncf]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/cunet demo --out cunet-demo

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) cunet-demo .pytest_cache
