"""Disk size of each install of cunet, measured in fresh virtual environments (not estimated).

Usage:
    .venv/bin/python bench/install_sizes.py [--public-index] [--torch SPEC_OR_WHEEL]
                                            [--installs cpu,cpu-openvino,deploy,full]
                                            [--out bench/results/install_sizes.json]

Each install gets a new venv in a temporary folder: `python -m venv`, `pip install --upgrade pip`, for the full
install torch first (`--torch`, default `torch==2.13.0` from PyTorch's CPU index, as the Makefile does on Linux),
then `pip install '.[EXTRAS]'` of this checkout (not editable: the package is copied as a user's install would
be). The size is what `du -sb` and `du -sh` report for the venv: bytes on disk, every file counted once.

--public-index ignores this machine's pip configuration (config files, PIP_* variables: local wheelhouses and
mirrors), so every package comes from PyPI as on a plain machine; torch from a wheel file given with --torch is the
one exception (PyTorch's CPU index may be unreachable where this runs). The largest packages of each venv are
listed too. Writes JSON (and prints it) and a table on stderr; it downloads several hundred MB and takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: name → (extras, needs torch); "deploy" and "full" are the Makefile's DEPLOY_EXTRAS and EXTRAS.
INSTALLS = {"cpu": ("cpu", False), "cpu-openvino": ("cpu,openvino", False), "deploy": ("cpu,detect,dev", False),
            "full": ("train,cpu,openvino,nncf,detect,dev", True)}


def _du_bytes(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def _du_human(path: Path) -> str:
    return subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]


def _largest(venv: Path, n: int = 6) -> list[tuple[str, int]]:
    site = next(venv.glob("lib/python*/site-packages"))
    sizes = [(p.name, _du_bytes(p)) for p in site.iterdir() if p.is_dir() and not p.name.endswith(".dist-info")]
    return sorted(sizes, key=lambda t: -t[1])[:n]


def _env(public: bool) -> dict[str, str]:
    # Not PYTHONPATH: a source checkout on it (with the egg-info `pip install .` leaves there) reads to pip as an
    # installed cunet.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if public:
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull  # no config file at all: PyPI only
    return env


def measure(name: str, work: Path, torch: str, public: bool) -> dict:
    extras, needs_torch = INSTALLS[name]
    venv = work / name
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    env = _env(public)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([*pip, "--upgrade", "pip"], check=True, env=env)
    if needs_torch:
        index = [] if torch.endswith(".whl") else ["--index-url", TORCH_CPU_INDEX]
        subprocess.run([*pip, torch, *index], check=True, env=env)
    subprocess.run([*pip, f"{REPO}[{extras}]"], check=True, env=env)
    versions = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
                              capture_output=True, text=True, check=True, env=env).stdout
    wanted = ("torch", "onnxruntime", "openvino", "nncf", "numpy", "scipy", "opencv-python-headless", "onnx", "dlib-bin")
    return {"install": name, "extras": extras, "torch": torch if needs_torch else None, "bytes": _du_bytes(venv),
            "du_h": _du_human(venv), "largest": _largest(venv), "seconds": time.perf_counter() - start,
            "versions": {p["name"]: p["version"] for p in json.loads(versions) if p["name"] in wanted}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--public-index", action="store_true", help="Ignore this machine's pip configuration: PyPI only.")
    ap.add_argument("--torch", default="torch==2.13.0",
                    help="torch of the full install: a requirement (from PyTorch's CPU index) or a wheel file.")
    ap.add_argument("--installs", default=",".join(INSTALLS), help="Which installs, e.g. cpu,full.")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "install_sizes.json")
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    from cunet.commands._common import print_table
    from cunet.evaluate.profile import environment
    from cunet.io import write_json
    from cunet.tempdirs import temp_dir

    with temp_dir("install-sizes") as work:
        rows = [measure(name, work, args.torch, args.public_index) for name in args.installs.split(",")]
    doc = {"public_index": args.public_index, "python": sys.version.split()[0], "environment": environment(),
           "installs": rows}
    write_json(args.out, doc)
    print_table("venv size on disk (du)", ["install", "extras", "du -sh", "MB (10^6 B)", "largest packages (MB)"],
                [(r["install"], r["extras"], r["du_h"], r["bytes"] / 1e6,
                  ", ".join(f"{n} {b / 1e6:.0f}" for n, b in r["largest"][:4])) for r in rows])
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
