"""An unreadable newest checkpoint prints one line: our warning, and none of Orbax's own.

Orbax logs through absl when it meets a broken file ("ERROR:absl:Failed to json parse Metadata
file ...", "WARNING:absl:Metadata file does not exist ..."); the Checkpointer raises those
loggers' levels while it reads checkpoints, then puts them back. Checked in a fresh process, on
its stderr, as a command-line run shows it (under pytest the log records would be captured).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import logging
import shutil
import sys
from pathlib import Path

import jax.numpy as jnp
from absl import logging as absl_logging

from genjax_models.train.checkpoint import Checkpointer


def state(step):
    return {"w": jnp.arange(4.0) * step, "step": jnp.int32(step)}


def half_written_json(step_dir):  # what a crash mid-write can leave
    (step_dir / "_CHECKPOINT_METADATA").write_text("")
    meta = step_dir / "meta" / "metadata"
    meta.write_bytes(meta.read_bytes()[: meta.stat().st_size // 2])


def emptied(step_dir):
    shutil.rmtree(step_dir)
    step_dir.mkdir()


for breaks in (half_written_json, emptied):
    directory = Path(sys.argv[1]) / breaks.__name__
    with Checkpointer(str(directory)) as checkpointer:
        for step in (1, 2):
            checkpointer.save(step, state(step), {})
    breaks(directory / "2")
    print(f"=== {breaks.__name__}", file=sys.stderr, flush=True)
    with Checkpointer(str(directory)) as checkpointer:  # the default log: stderr
        _, meta = checkpointer.restore(state(0))
        checkpointer.save(3, state(3), {})  # moves step 2 aside
    print(f"restored step {meta['step']}", file=sys.stderr, flush=True)
print("=== after", file=sys.stderr, flush=True)
print(f"absl level {logging.getLogger('absl').level}", file=sys.stderr, flush=True)
absl_logging.warning("absl still logs")
"""


@pytest.fixture(scope="module")
def sections(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The subprocess's stderr lines after each ``=== name`` marker, by name."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path_factory.mktemp("warning"))],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in done.stderr.splitlines():
        if line.startswith("=== "):
            current = found.setdefault(line[4:], [])
        elif line.strip():
            current.append(line)
    return found


@pytest.mark.parametrize("how", ["half_written_json", "emptied"])
def test_unreadable_newest_checkpoint_prints_only_our_warning(
    sections: dict[str, list[str]], how: str
) -> None:
    lines = sections[how]
    assert len(lines) == 2 and lines[1] == "restored step 1", lines
    assert lines[0].startswith("genjax-models: warning: checkpoint "), lines
    assert "/2 is unreadable" in lines[0] and lines[0].endswith("using step 1 instead"), lines
    assert not any("absl" in line for line in lines), lines


def test_the_loggers_levels_are_put_back(sections: dict[str, list[str]]) -> None:
    lines = sections["after"]
    assert lines[0] == "absl level 0", lines
    assert any("absl still logs" in line for line in lines[1:]), lines
