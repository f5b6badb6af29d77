"""Import rules (docs/ARCHITECTURE.md): the data side (data/ with its sandbox, pipeline and trace
packages, rewards/, and the shared top-level helpers) never loads the accelerator stack; the model
side never imports data/rewards/rl/eval; rl/objective is pure maths (jax, numpy, its own
modules); no module is over MAX_LINES. Checked in fresh interpreters and by scanning imports."""

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "execverify_jax"
HEAVY = ("jax", "jaxlib", "flax", "optax", "orbax", "torch")
# Pure-Python helpers at the top level that every side (data included) may import.
SHARED = ("buckets", "jsonl", "config_loader", "shared_config")
MAX_LINES = 450


def _modules(sub: str) -> list[str]:
    return [
        m.name
        for m in pkgutil.walk_packages([str(PKG / sub)], prefix=f"execverify_jax.{sub}.")
        if not m.name.endswith("__main__")
    ]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.add("." * node.level + (node.module or ""))
    return names


@pytest.mark.parametrize("area", ["data", "rewards"])
def test_data_side_imports_no_accelerator_stack(area):
    # loader.py is the one module allowed to import grain (which itself pulls in jax).
    mods = [m for m in _modules(area) if not m.endswith(".loader")]
    if area == "data":
        mods += [f"execverify_jax.{m}" for m in SHARED]
    for sub in ("sandbox", "pipeline", "trace") if area == "data" else ():
        assert any(m.startswith(f"execverify_jax.data.{sub}.") for m in mods), sub  # subpackages walked
    code = (
        "import importlib, json, sys\n"
        f"mods = {mods!r}\n"
        "for m in mods: importlib.import_module(m)\n"
        f"print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in {HEAVY!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_data_sources_never_import_jax_directly():
    paths = [*(PKG / "data").rglob("*.py"), *(PKG / "rewards").rglob("*.py"), *(PKG / f"{m}.py" for m in SHARED)]
    for path in paths:
        bad = {n for n in _imports(path) if n.split(".")[0] in HEAVY}
        assert not bad, f"{path} imports {bad}"


def test_shared_helpers_import_nothing_from_the_package():
    # Every side imports them, so they may not pull any side in (only each other).
    shared = {f"execverify_jax.{m}" for m in SHARED}
    for m in SHARED:
        names = _imports(PKG / f"{m}.py")
        assert not {n for n in names if n.startswith(("execverify_jax", ".")) and n not in shared}, (m, names)


def test_objective_is_pure_maths():
    allowed = {"jax", "numpy"} | set(sys.stdlib_module_names)
    paths = sorted((PKG / "rl" / "objective").rglob("*.py"))
    assert paths
    for path in paths:
        for name in _imports(path):
            if name.startswith("execverify_jax.rl.objective") or (name.startswith(".") and not name.startswith("..")):
                continue
            if name in {f"execverify_jax.{m}" for m in SHARED}:  # config checks only, pure Python
                continue
            assert name.split(".")[0] in allowed, f"{path} imports {name}"


def test_no_module_is_over_the_line_limit():
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"


def test_model_side_does_not_import_data_rl_or_rewards():
    for path in (PKG / "model").rglob("*.py"):
        for name in _imports(path):
            parts = name.lstrip(".").split(".")
            assert not (name.startswith("execverify_jax.") and parts[1] in ("data", "rl", "rewards", "eval")), (
                f"{path} imports {name}"
            )
            if name.startswith(".."):
                assert parts[0] not in ("data", "rl", "rewards", "eval"), f"{path} imports {name}"


def test_cli_help_lists_commands_and_each_has_help():
    from execverify_jax import cli

    parser = cli.build_parser()
    text = parser.format_help()
    for name, _, _ in cli._available():
        assert name in text
        out = subprocess.run(
            [sys.executable, "-m", "execverify_jax", name, "--help"], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, (name, out.stderr)
        assert "usage:" in out.stdout
