"""`import genjax_models` needs only jax/flax/optax/orbax and never imports TensorFlow."""

from __future__ import annotations

import subprocess
import sys

BLOCKED = ["tensorflow", "tensorflow_datasets", "sklearn", "torch", "tqdm", "tensorboardX", "PIL"]


def test_import_needs_only_the_core_dependencies() -> None:
    script = (
        "import sys\n"
        f"for name in {BLOCKED!r}:\n"
        "    sys.modules[name] = None  # any import of it raises ImportError\n"
        "import genjax_models, genjax_models.models, genjax_models.losses, genjax_models.configs\n"
        "assert 'tensorflow' not in sys.modules or sys.modules['tensorflow'] is None\n"
        "print(genjax_models.__version__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0.1.0"


def test_importing_the_whole_library_does_not_import_tensorflow() -> None:
    script = (
        "import sys, genjax_models, genjax_models.train, genjax_models.cli, genjax_models.data\n"
        "print('tensorflow' in sys.modules, 'tensorflow_datasets' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
