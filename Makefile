# The two commands a newcomer needs: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, pinned: pip takes the CPU build of 2.13.0 from this machine's disk in seconds, while a range
# resolved by pip inside `pip install -e .` could pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
# The extras of the full (development) install; one more runtime extra is one more word here.
EXTRAS ?= train,cpu,dev
PYTEST_ARGS ?= -n 2
# The deployment install: the same package without the `train` extra, so without torch. `make test` runs the
# tests of tests/deploy in it, on artifacts the full install built into DEPLOY_ARTIFACTS.
DEPLOY_VENV ?= .venv-deploy
DEPLOY_BIN := $(DEPLOY_VENV)/bin
DEPLOY_EXTRAS ?= cpu,dev
DEPLOY_ARTIFACTS ?= build/deploy-artifacts

.PHONY: demo test test-deploy install install-deploy clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

$(DEPLOY_BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_BIN)/pip install --quiet --upgrade pip
	$(DEPLOY_BIN)/pip install --quiet -e '.[$(DEPLOY_EXTRAS)]'
	@! $(DEPLOY_BIN)/python -c "import torch" 2>/dev/null || { echo "$(DEPLOY_VENV) has torch; it must not"; exit 1; }
	touch $@

install: $(BIN)/.installed

install-deploy: $(DEPLOY_BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/cunet demo --out cunet-demo

# The full suite, then the deployment tests again without torch.
test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) test-deploy

test-deploy: $(BIN)/.installed $(DEPLOY_BIN)/.installed
	$(BIN)/python tests/deploy/make_artifacts.py $(DEPLOY_ARTIFACTS)
	CUNET_DEPLOY_ARTIFACTS=$(abspath $(DEPLOY_ARTIFACTS)) $(DEPLOY_BIN)/python -m pytest $(PYTEST_ARGS) tests/deploy

clean:
	rm -rf $(VENV) $(DEPLOY_VENV) build cunet-demo .pytest_cache
