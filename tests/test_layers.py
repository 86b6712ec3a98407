"""The package's imports run one way, and the deployment commands never reach torch: checked on the source with
`ast` (nothing is imported), counting imports inside functions too, since those run when the command does.

Layers, top to bottom; a module imports only from layers below its own, or sideways where `SIDEWAYS` lists it:

    commands, cli  →  pipeline  →  train / compile / calib / evaluate  →  runtime  →  model / data  →  io / errors

Torch: from every deployment command, the imports a command can run are followed to the end; none may be `torch`.
Three kinds of import are not followed, each listed here and each checked to still exist (so a stale entry fails):
an import inside `try: ... except ImportError` (an optional fallback), the edges in `TORCH_GATES` (code that calls
`cunet.errors.require_torch` first, so a torch-free install gets a one-line error there), and `TORCH_FALLBACK`
modules, whose torch imports run only where torch is installed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "cunet"

#: Rank of every top-level module/package of `cunet` (higher imports lower).
LAYERS = {
    "__main__": 6, "cli": 6, "commands": 6,
    "pipeline": 5,
    "train": 4, "compile": 4, "calib": 4, "evaluate": 4,
    "runtime": 3,
    "model": 2, "data": 2,
    "io": 1, "errors": 1, "console": 1, "filetype": 1, "limits": 1, "batch": 1, "tempdirs": 1,
    "": 1,  # "": the package's own __init__
}
#: The sideways arrows allowed between different packages of one layer: (importer prefix, imported prefix).
SIDEWAYS = {
    ("compile", "calib"): "quantize calibrates the activation ranges it writes into Q/DQ nodes",
    ("compile", "evaluate.scoring"): "--max-drop is scored with evaluate's own code (cunet.compile.accuracy_budget)",
    ("train", "evaluate.metrics"): "validation during training scores with the evaluation metrics",
    ("train", "evaluate.scoring"): "validation NME is the per-image NME `cunet metrics` reports",
    ("model", "data.spec"): "a checkpoint is checked against its task's landmark spec",
    ("", "errors"): "the package exports CunetError",
    ("io", "errors"): "a refused overwrite is a one-line CunetError",
    ("filetype", "errors"): "a model file of the wrong kind is a one-line CunetError",
    ("filetype", "limits"): "an empty model file is `PATH: empty file`, as every reader says it",
    ("limits", "errors"): "an empty or oversized file is a one-line CunetError",
    ("batch", "errors"): "--strict turns the first skipped file into a one-line CunetError",
    ("io", "limits"): "the .cunet-outputs manifest is read under the size limit of every file read whole",
    ("tempdirs", "io"): "a temporary folder's owner marker is written atomically",
    ("cli", "commands"): "the CLI discovers the command modules",
    ("__main__", "cli"): "`python -m cunet` runs the CLI",
}
#: The commands a torch-free install runs (the command modules; `cli` itself is checked too).
DEPLOY_COMMANDS = ("bench", "compare", "compile", "data", "doctor", "evaluate", "lowbit", "metrics", "predict",
                   "profile", "quantize", "summary")
#: Imports behind `require_torch` (importer module, imported module): a torch-free install stops there in one line.
TORCH_GATES = {
    ("cunet.runtime.predictor", "cunet.model.checkpoint"): "`.pt` inputs: `_open_torch` calls require_torch",
    ("cunet.runtime.predictor", "cunet.runtime.torch_backend"): "likewise",
    ("cunet.pipeline.bench", "cunet.model.checkpoint"): "bench of a `.pt`: run_bench calls require_torch",
    ("cunet.pipeline.bench_plan", "cunet.compile.export"): "only planned for a `.pt` input, after require_torch",
    ("cunet.commands.summary", "cunet.model.summary"): "`summary VARIANT` calls require_torch",
    ("cunet.commands.summary", "cunet.model.config"): "likewise",
    ("cunet.commands.summary", "cunet.model.quant"): "likewise",
    ("cunet.commands.summary", "cunet.model.checkpoint"): "`summary MODEL.pt`: after the same require_torch",
}
#: Modules whose torch imports are the fallback where torch is installed (the CUDA device layer).
TORCH_FALLBACK = {"cunet.runtime.cuda_drivers"}


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    line: int
    optional: bool  # inside `try: ... except ImportError`


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _catches_import_error(node: ast.Try) -> bool:
    names = []
    for h in node.handlers:
        t = h.type
        names += [e.id for e in (t.elts if isinstance(t, ast.Tuple) else [t]) if isinstance(e, ast.Name)]
    return any(n in ("ImportError", "ModuleNotFoundError") for n in names)


def _is_module(name: str) -> bool:
    base = PKG.parent / name.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def edges(path: Path) -> list[Edge]:
    """Every import of a `cunet` module or of torch in `path` (absolute names, a package's submodules resolved)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: list[Edge] = []

    def visit(node: ast.AST, optional: bool) -> None:
        if isinstance(node, ast.Try):
            body_optional = optional or _catches_import_error(node)
            for child in node.body:
                visit(child, body_optional)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, optional)
            return
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            subs = [f"{mod}.{a.name}" for a in node.names if _is_module(f"{mod}.{a.name}")]
            names = subs or [mod]  # `from cunet.evaluate import metrics` imports cunet.evaluate.metrics
        for n in names:
            if n in ("cunet", "torch") or n.startswith(("cunet.", "torch.")):
                found.append(Edge(me, "torch" if n.startswith("torch") else n, node.lineno, optional))
        for child in ast.iter_child_nodes(node):
            visit(child, optional)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def graph() -> dict[str, list[Edge]]:
    return {module_name(p): edges(p) for p in sorted(PKG.rglob("*.py"))}


def _part(module: str) -> str:
    """'cunet.evaluate.metrics' → 'evaluate.metrics'; the package itself → ''."""
    return module.partition(".")[2]


def _top(module: str) -> str:
    return _part(module).split(".")[0]


def layer_violations(g: dict[str, list[Edge]]) -> list[str]:
    bad = []
    for src, out in g.items():
        for e in out:
            if e.dst in ("torch", "cunet") or _top(src) == _top(e.dst):
                continue  # a third-party import, `cunet.__version__`, or inside one package
            rs, rd = LAYERS[_top(src)], LAYERS[_top(e.dst)]
            sideways = rs == rd and any(_part(src).startswith(a) and _part(e.dst).startswith(b) and
                                        (a or not _part(src)) for a, b in SIDEWAYS)
            if rs < rd or (rs == rd and not sideways):
                bad.append(f"{src}:{e.line} imports {e.dst}")
    return bad


def torch_paths(g: dict[str, list[Edge]], starts: list[str]) -> list[str]:
    """For each start module that reaches torch: the chain of imports that gets there."""
    bad = []
    for start in starts:
        came_from: dict[str, Edge | None] = {start: None}
        todo = [start]
        while todo:
            mod = todo.pop(0)
            if mod in TORCH_FALLBACK:
                continue
            hit = None
            for e in g.get(mod, []):
                if e.optional or (e.src, e.dst) in TORCH_GATES:
                    continue
                if e.dst == "torch":
                    hit = e
                    break
                if e.dst in g and e.dst not in came_from:
                    came_from[e.dst] = e
                    todo.append(e.dst)
            if hit:
                chain, step = [f"{hit.src}:{hit.line} → torch"], came_from[mod]
                while step is not None:
                    chain.append(f"{step.src}:{step.line} → {step.dst}")
                    step = came_from[step.src]
                bad.append(" ← ".join(chain))
                break
    return bad


def deploy_starts(g: dict[str, list[Edge]]) -> list[str]:
    return ["cunet", "cunet.cli", *[f"cunet.commands.{c}" for c in DEPLOY_COMMANDS if f"cunet.commands.{c}" in g]]


def test_every_module_has_a_layer() -> None:
    assert sorted(m for m in graph() if _top(m) not in LAYERS) == []


def test_imports_run_one_way() -> None:
    assert layer_violations(graph()) == []


def test_no_torch_import_is_reachable_from_the_deployment_commands() -> None:
    g = graph()
    assert torch_paths(g, deploy_starts(g)) == []


def test_every_listed_exception_is_still_a_real_import() -> None:
    g = graph()
    real = {(e.src, e.dst) for out in g.values() for e in out}
    assert sorted(k for k in TORCH_GATES if k not in real) == []
    assert all(any(_part(m).startswith(b) for m in g) for _, b in SIDEWAYS)


def test_the_checks_catch_each_arrow_that_main_had() -> None:
    """The arrows these checks were written against (main before the moves), replayed on a copy of the graph."""
    g = {k: list(v) for k, v in graph().items()}
    fake = {
        "cunet.evaluate.bench": [Edge("cunet.evaluate.bench", "cunet.commands._common", 1, False),
                                 Edge("cunet.evaluate.bench", "cunet.compile.export", 2, False)],
        "cunet.runtime.predictor": [Edge("cunet.runtime.predictor", "cunet.train.checkpoint", 3, False)],
        "cunet.compile.lowbit": [Edge("cunet.compile.lowbit", "cunet.compile.export", 4, False)],
    }
    for mod, out in fake.items():
        g.setdefault(mod, []).extend(out)
    found = "\n".join(layer_violations(g))
    assert "cunet.evaluate.bench:1 imports cunet.commands._common" in found
    assert "cunet.evaluate.bench:2 imports cunet.compile.export" in found
    assert "cunet.runtime.predictor:3 imports cunet.train.checkpoint" in found
    assert "cunet.compile.lowbit" not in found  # inside one package: a cycle, caught below
    assert cycles_inside_packages(g) and any("cunet.compile.lowbit" in c for c in cycles_inside_packages(g))
    # a top-level torch import in a module every deployment command reaches
    g["cunet.runtime.meta"] = [*g["cunet.runtime.meta"], Edge("cunet.runtime.meta", "torch", 6, False)]
    assert any("cunet.runtime.meta:6 → torch" in p for p in torch_paths(g, deploy_starts(g)))


def cycles_inside_packages(g: dict[str, list[Edge]]) -> list[str]:
    """Pairs of modules that import each other (directly), anywhere in the package."""
    pairs = {(e.src, e.dst) for out in g.values() for e in out}
    return sorted(f"{a} ↔ {b}" for a, b in pairs if (b, a) in pairs and a < b)


def test_no_two_modules_import_each_other() -> None:
    assert cycles_inside_packages(graph()) == []


def test_the_package_cites_no_document_outside_the_repository() -> None:
    import re

    repo = PKG.parent
    cited = {(p.relative_to(repo).as_posix(), m) for p in PKG.rglob("*.py")
             for m in re.findall(r"\b([A-Z][A-Z_]*\.md)\b", p.read_text(encoding="utf-8"))}
    assert sorted((p, m) for p, m in cited if not (repo / m).is_file()) == []
