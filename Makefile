# The two commands a newcomer needs: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, pinned: a range resolved by pip inside `pip install -e .` could pull a newer, multi-GB CUDA build.
TORCH ?= torch==2.13.0
# Where the CPU build of torch comes from. A pinned torch that pip finds without any index (a wheelhouse in pip's
# find-links, as on this project's machines: the CPU wheel, in seconds) is used as it is. Otherwise, on Linux,
# PyTorch's own CPU index, as PyTorch's install guide says: PyPI's Linux torch is the CUDA build (torch 2.13.0 pulls
# 19 nvidia/cuda packages and triton). Elsewhere (macOS, Windows) PyPI's torch is already the CPU build.
# `make demo TORCH_INDEX=` uses pip's own configuration instead.
TORCH_INDEX ?= $(if $(filter Linux,$(shell uname -s)),https://download.pytorch.org/whl/cpu)
# The extras of the full (development) install; one more runtime extra is one more word here.
EXTRAS ?= train,cpu,openvino,nncf,detect,dev
PYTEST_ARGS ?= -n 2
# The deployment install: the same package without the `train` extra, so without torch. `make test` runs the
# tests of tests/deploy in it, on artifacts the full install built into DEPLOY_ARTIFACTS.
DEPLOY_VENV ?= .venv-deploy
DEPLOY_BIN := $(DEPLOY_VENV)/bin
DEPLOY_EXTRAS ?= cpu,detect,dev
DEPLOY_ARTIFACTS ?= build/deploy-artifacts

.PHONY: demo test test-deploy install install-deploy clean typecheck gpu-check

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-index --no-deps $(TORCH) 2>/dev/null \
	  || $(BIN)/pip install --quiet $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	# setuptools tells every editable install a boxed "Editable installation" notice; it is no problem here.
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

$(DEPLOY_BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_BIN)/pip install --quiet --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(DEPLOY_BIN)/pip install --quiet -e '.[$(DEPLOY_EXTRAS)]'
	@! $(DEPLOY_BIN)/python -c "import torch" 2>/dev/null || { echo "$(DEPLOY_VENV) has torch; it must not"; exit 1; }
	touch $@

install: $(BIN)/.installed

install-deploy: $(DEPLOY_BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/cunet demo --out cunet-demo

# Type check of the GPU modules, the full suite, then the deployment tests again without torch.
# tests/runtime/test_ov_backend.py runs in a process of its own: in 3 of 4 full runs on 2 workers, the xdist worker
# that reached the module's first test (after hundreds of others had loaded torch, ONNX Runtime and NNCF into it)
# died without a message, no OOM logged; run alone (or with the other OpenVINO tests) it passes every time (~15 s).
OWN_PROCESS_TESTS := tests/runtime/test_ov_backend.py
test: $(BIN)/.installed typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS) $(addprefix --ignore=,$(OWN_PROCESS_TESTS))
	$(BIN)/python -m pytest -n 0 $(OWN_PROCESS_TESTS)
	$(MAKE) test-deploy

test-deploy: $(BIN)/.installed $(DEPLOY_BIN)/.installed
	$(BIN)/python tests/deploy/make_artifacts.py $(DEPLOY_ARTIFACTS)
	CUNET_DEPLOY_ARTIFACTS=$(abspath $(DEPLOY_ARTIFACTS)) $(DEPLOY_BIN)/python -m pytest $(PYTEST_ARGS) tests/deploy

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
	rm -rf $(VENV) $(DEPLOY_VENV) $(TYPECHECK_VENV) build cunet-demo .pytest_cache .mypy_cache
