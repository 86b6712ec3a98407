# The two commands a newcomer needs: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, pinned: pip takes the CPU build of 2.13.0 from this machine's disk in seconds, while a range
# resolved by pip inside `pip install -e .` could pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
PYTEST_ARGS ?= -n 2

.PHONY: demo test install clean typecheck gpu-check

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[cpu,dev]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/cunet demo --out cunet-demo

test: $(BIN)/.installed typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The GPU modules type-checked against TensorRT's stubs (a renamed or removed TensorRT API fails here). Its own venv:
# the stubs leave an importable `tensorrt` namespace that would make `cunet doctor` in .venv report TensorRT.
TYPECHECK_VENV ?= .venv-typecheck
$(TYPECHECK_VENV)/.installed:
	$(PYTHON) -m venv $(TYPECHECK_VENV)
	$(TYPECHECK_VENV)/bin/pip install --quiet mypy==2.4.1
	$(TYPECHECK_VENV)/bin/pip install --quiet --no-deps --target $(TYPECHECK_VENV)/stubs tensorrt-stubs==10.13.0.35.1
	@# The published stubs name parameters `in` and put one without a default after defaulted ones: syntax errors
	@# to mypy. Rename / default those few so the file parses; nothing else in it changes.
	$(TYPECHECK_VENV)/bin/python -c "import re, sys; p = sys.argv[1]; s = open(p).read(); \
	s = re.sub(r'([(,] )in: ', r'\1in_: ', s).replace('channel_axis: int)', 'channel_axis: int = ...)'); \
	open(p, 'w').write(s)" $(TYPECHECK_VENV)/stubs/tensorrt_bindings/tensorrt.pyi
	touch $@

typecheck: $(TYPECHECK_VENV)/.installed
	MYPYPATH=$(TYPECHECK_VENV)/stubs $(TYPECHECK_VENV)/bin/mypy

# On a machine with an NVIDIA GPU: engines, ORT GPU providers and torch CUDA side by side (bench/gpu_check.py).
gpu-check:
	PYTHONPATH=. $(PYTHON) bench/gpu_check.py

clean:
	rm -rf $(VENV) $(TYPECHECK_VENV) cunet-demo .pytest_cache .mypy_cache
