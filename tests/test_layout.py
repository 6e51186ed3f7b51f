"""The package's layers: the import-linter contracts of pyproject.toml hold, and they catch a
broken one; the command line parses and prints its help without importing JAX."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the ``genjax_models`` package found first on ``tree``'s path."""
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_import_contracts_hold() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    contracts = (ROOT / "pyproject.toml").read_text().count("[[tool.importlinter.contracts]]")
    assert contracts >= 6
    assert f"Contracts: {contracts} kept, 0 broken." in done.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "contract"),
    [
        # the engine reaching up into the ready-made runs
        ("train/state.py", "import genjax_models.runs.workdir", "Layers, bottom up"),
        # the engine reading data itself
        ("train/steps.py", "import genjax_models.data.tokenizer", "never import the data layer"),
        # a building block importing the engine
        ("nn/linear.py", "import genjax_models.train.optimizers", "Layers, bottom up"),
        # the data layer importing the models
        ("data/text.py", "import genjax_models.models.gan", "The data layer feeds"),
        # a circle between two sibling modules (mlp already imports dropout)
        ("nn/dropout.py", "import genjax_models.nn.mlp", "No import circle"),
        # the parser importing JAX (the command line's --help would load it)
        ("cli/parser.py", "import jax", "import no JAX"),
    ],
)
def test_a_broken_contract_fails_lint_imports(tmp_path, module, bad_import, contract) -> None:
    """A copy of the package with one forbidden import added: lint-imports exits non-zero and
    names the broken contract."""
    shutil.copytree(
        ROOT / "genjax_models",
        tmp_path / "genjax_models",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "genjax_models" / module
    target.write_text(target.read_text() + f"\n{bad_import}  # noqa\n")
    done = _lint_imports(tmp_path)
    assert done.returncode != 0, done.stdout[-3000:]
    broken = [line for line in done.stdout.splitlines() if line.rstrip().endswith("BROKEN")]
    assert any(contract in line for line in broken), done.stdout[-3000:]


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["train", "gan", "--help"],
        ["train", "lm", "--help"],
        ["eval", "gan", "--help"],
        ["launch", "--help"],
    ],
)
def test_help_imports_no_jax(argv) -> None:
    """``genjax-models ... --help`` parses with the standard library and the configs only (it
    answered in ~4 s when the CLI imported the package's models first)."""
    code = (
        "import sys\n"
        "from genjax_models.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0, done.code\n"
        "heavy = sorted(m for m in ('jax', 'flax', 'optax', 'orbax', 'numpy', 'tensorflow')"
        " if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage: genjax-models" in done.stdout
    assert done.stdout.strip().endswith("HEAVY []")


def test_importing_the_package_loads_no_jax_until_a_name_is_used() -> None:
    code = (
        "import sys, genjax_models\n"
        "before = 'jax' in sys.modules\n"
        "config = genjax_models.GANConfig(base_width=16)\n"
        "mid = 'jax' in sys.modules\n"
        "genjax_models.make_dcgan(config)\n"
        "print(before, mid, 'jax' in sys.modules, sorted(genjax_models.__all__) == "
        "sorted(n for n in dir(genjax_models) if n in genjax_models.__all__))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False", "True", "True"]


def test_no_module_is_over_400_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in (ROOT / "genjax_models").rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > 420} == {}
