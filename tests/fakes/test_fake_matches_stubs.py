"""Keep the fake TensorRT honest: every class method and enum member it offers exists in tensorrt-stubs 10.13.

Runs where `make typecheck` installed the stubs (.venv-typecheck/stubs); skipped elsewhere. TensorRT 11 members the
fake adds are the 10.x ones minus removals, so checking the 10.x fake covers both.
"""

from __future__ import annotations

import ast
import enum
import importlib.util
import sys
from pathlib import Path

import pytest

STUBS = Path(__file__).resolve().parents[2] / ".venv-typecheck" / "stubs" / "tensorrt_bindings" / "tensorrt.pyi"
#: fake class → the binding class it stands in for
CLASSES = {"Builder": "Builder", "OnnxParser": "OnnxParser", "Runtime": "Runtime", "Logger": "Logger",
           "Config": "IBuilderConfig", "Network": "INetworkDefinition", "Profile": "IOptimizationProfile",
           "TimingCache": "ITimingCache", "Engine": "ICudaEngine", "Context": "IExecutionContext",
           "Tensor": "ITensor", "HostMemory": "IHostMemory", "Dims": "Dims"}


def _stub_members() -> dict[str, set[str]]:
    tree = ast.parse(STUBS.read_text())
    out: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names = set()
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
            out[node.name] = names
    return out


@pytest.mark.skipif(not STUBS.is_file(), reason="tensorrt-stubs not installed (make typecheck installs them)")
def test_fake_api_exists_in_the_stubs():
    spec = importlib.util.spec_from_file_location("fake_trt_check", Path(__file__).parent / "tensorrt.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)

    class Driver:
        current, devices, calls = 0, [], []

    trt, _ = module.make_tensorrt("10.13.0.35", Driver())
    stubs = _stub_members()
    for cls in (v for v in vars(trt).values() if isinstance(v, type) and issubclass(v, enum.Enum)):
        assert {m.name for m in cls} <= stubs[cls.__name__], cls.__name__
    for fake, real in CLASSES.items():
        cls = trt.FAKE_CLASSES[fake]
        public = {n for n in vars(cls) if not n.startswith("_") and n not in ("np_dtype", "session")}
        missing = public - stubs[real]
        assert not missing, f"fake {fake} offers {missing}, which the binding's {real} does not have"
