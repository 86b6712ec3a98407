"""Build what the deployment tests read, with a full (torch) install: `python tests/deploy/make_artifacts.py OUT`.

OUT/face.pt (a random-init tiny checkpoint), OUT/face.onnx (it, through the real exporter) and OUT/faces (12
synthetic faces, 300-W layout). `make test-deploy` runs this in .venv, then tests/deploy in the torch-free
.venv-deploy; in a full install the tests' conftest calls `build` itself. A finished build leaves OUT/done.json,
and a second call with one there returns at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SEED = 0


def build(out: Path) -> Path:
    out = Path(out)
    if (out / "done.json").is_file():
        return out
    import torch

    from cunet.compile.export import export_onnx
    from cunet.data.synth import synthesize
    from cunet.model import CUNet, get_variant
    from cunet.model.checkpoint import save_checkpoint

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    save_checkpoint(out / "face.pt", CUNet(get_variant("cunet-tiny", input_size=64)), "face")
    export_onnx(out / "face.pt", out / "face.onnx")
    synthesize(out / "faces", "face", n=12, seed=1, image_size=96, overwrite=True)
    (out / "done.json").write_text(json.dumps({"torch": torch.__version__}), encoding="utf-8")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_artifacts.py OUT")
    print(build(Path(sys.argv[1])))
