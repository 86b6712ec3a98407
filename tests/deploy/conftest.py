"""The deployment tests run `cunet` as a real subprocess that cannot import torch, in either install.

In the torch-free install (.venv-deploy, `make test-deploy`) torch is simply absent and the artifacts come from
CUNET_DEPLOY_ARTIFACTS, built beforehand by the full install. In the full install the artifacts are built here and
every child process starts with `sys.modules["torch"] = None` (a `sitecustomize` on PYTHONPATH), so an import of
torch raises ImportError exactly as it would where torch is not installed: the same tests prove the same thing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BLOCK = 'import sys\nsys.modules["torch"] = None  # the deployment tests: behave as if torch were not installed\n'


@dataclass(frozen=True)
class Artifacts:
    root: Path
    checkpoint: Path  # face.pt
    onnx: Path  # face.onnx
    data: Path  # 12 synthetic faces, 300-W layout


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Artifacts:
    given = os.environ.get("CUNET_DEPLOY_ARTIFACTS")
    if given:
        root = Path(given)
        if not (root / "done.json").is_file():
            pytest.fail(f"CUNET_DEPLOY_ARTIFACTS={given} holds no finished build; run tests/deploy/make_artifacts.py")
    elif importlib.util.find_spec("torch") is None:
        pytest.fail("no torch here and no CUNET_DEPLOY_ARTIFACTS: run `make test-deploy`, which builds them first")
    else:
        spec = importlib.util.spec_from_file_location("make_artifacts", HERE / "make_artifacts.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        root = module.build(tmp_path_factory.mktemp("deploy"))
    return Artifacts(root, root / "face.pt", root / "face.onnx", root / "faces")


@pytest.fixture(scope="session")
def no_torch_env(tmp_path_factory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("no-torch")
    (site / "sitecustomize.py").write_text(BLOCK, encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture(scope="session")
def cunet(no_torch_env):
    """`cunet(*args)`: one `python -m cunet ARGS` child that cannot import torch."""

    def run(*args: object, timeout: float = 300) -> Run:
        proc = subprocess.run([sys.executable, "-m", "cunet", *map(str, args)], capture_output=True, text=True,
                              env=no_torch_env, timeout=timeout, cwd=REPO)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return run
