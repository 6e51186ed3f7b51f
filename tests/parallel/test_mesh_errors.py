"""Mesh flags, rules tables and the logical-to-mesh resolution: one-line errors for settings that
cannot work, raised before any tracing; non-dividing dimensions replicated and reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jax.sharding import PartitionSpec as P
from multidevice_support import multidevice_env

from genjax_models.nn.partitioning import resolve_spec
from genjax_models.parallel.sharding import DEFAULT_RULES, MeshError, parse_mesh, parse_rules

MESH_8 = {"data": 1, "fsdp": 8, "tensor": 1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fsdp=8", MESH_8),
        ("data=2,fsdp=2,tensor=2", {"data": 2, "fsdp": 2, "tensor": 2}),
        ("fsdp=2,tensor=-1", {"data": 1, "fsdp": 2, "tensor": 4}),
        ("data=-1", {"data": 8, "fsdp": 1, "tensor": 1}),
    ],
)
def test_parse_mesh(text: str, expected: dict) -> None:
    assert parse_mesh(text, 8) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fsdp=4", "has 4 devices but this run has 8"),
        ("model=8", "axis 'model' is unknown: use data, fsdp, tensor"),
        ("fsdp=0,data=8", "fsdp=0 is invalid"),
        ("fsdp=-2,data=-4", "fsdp=-2 is invalid"),
        ("fsdp=-1,tensor=-1", "two -1 axes (fsdp and tensor)"),
        ("fsdp=3,data=-1", "do not split into groups of 3"),
        ("fsdp", "is not axis=size"),
        ("fsdp=two", "fsdp='two' is invalid"),
        ("fsdp=2,fsdp=4", "names 'fsdp' twice"),
    ],
)
def test_bad_meshes_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(MeshError) as err:
        parse_mesh(text, 8)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_parse_rules_overrides_the_named_entries_only() -> None:
    rules = dict(parse_rules("embed=tensor,vocab=,batch=data+fsdp"))
    assert rules["embed"] == "tensor" and rules["vocab"] is None
    assert rules["batch"] == ("data", "fsdp") and rules["mlp"] == "tensor"
    assert len(parse_rules("")) == len(DEFAULT_RULES)


def test_resolve_spec_splits_megatron_and_fsdp_style() -> None:
    mesh = {"data": 1, "fsdp": 2, "tensor": 4}
    spec, notes = resolve_spec(("embed", "mlp"), (256, 1024), DEFAULT_RULES, mesh)
    assert spec == P("fsdp", "tensor") and notes == []
    spec, _ = resolve_spec(("heads", "kv", "embed"), (8, 32, 256), DEFAULT_RULES, mesh)
    assert spec == P("tensor", None, "fsdp")
    spec, _ = resolve_spec(("embed",), (256,), DEFAULT_RULES, {"data": 8})
    assert spec == P()  # the data axis never splits parameters


def test_a_dimension_that_does_not_divide_is_replicated_and_reported() -> None:
    spec, notes = resolve_spec(("vocab", "embed"), (259, 256), DEFAULT_RULES, {"tensor": 4})
    assert spec == P() and notes == ["vocab=259 does not divide tensor=4: replicated"]
    spec, notes = resolve_spec(
        ("conv_in", "conv_out"), (8, 6), DEFAULT_RULES, {"fsdp": 2, "tensor": 4}
    )
    assert spec == P(None, "fsdp")  # 6 channels: not over tensor=4, over fsdp=2 instead
    assert notes == []


def _cli(*args: str, tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = multidevice_env()
    env.pop("XLA_FLAGS")  # the simulated devices, without the -O0 test setting
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    return subprocess.run(
        [sys.executable, "-m", "genjax_models.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


TINY_LM = [
    "--set", "d_model=32", "--set", "num_heads=4", "--set", "mlp_dim=64",
    "--set", "num_layers=2", "--set", "max_len=32",
]  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--mesh", "fsdp=4"], "has 4 devices but this run has 8"),
        (["--mesh", "data=2,fsdp=2,tensor=2", "--batch-size", "6"], "data x fsdp = 4"),
        (["--mesh", "fsdp=8", "--rules", "embed=model"], "names mesh axis 'model'"),
        (["--mesh", "fsdp=8", "--parallel", "pmap"], "--parallel pmap splits the batch only"),
        (["--mesh", "fsdp=8", "--devices", "8"], "--devices and --mesh both given"),
    ],
)
def test_cli_mesh_errors_before_any_training(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    result = _cli(
        "train", "lm", "--workdir", str(tmp_path / "run"), "--steps", "1", *TINY_LM, *flags,
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert message in last, result.stderr[-2000:]
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_train_lm_with_fsdp_writes_the_sharding_report(tmp_path: Path) -> None:
    """The README's worked example: the LM on 8 simulated devices with fsdp=8."""
    workdir = tmp_path / "run"
    result = _cli(
        "train", "lm", "--workdir", str(workdir), "--steps", "2", "--batch-size", "8",
        "--log-every", "1", "--checkpoint-every", "2", "--mesh", "fsdp=8", *TINY_LM,
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mesh data=1,fsdp=8,tensor=1" in result.stderr + result.stdout
    report = json.loads((workdir / "sharding.json").read_text())
    assert report["mesh"] == MESH_8 and report["plan"] == "jit"
    leaves = {(leaf["field"], leaf["path"]): leaf for leaf in report["leaves"]}
    kernel = leaves[("params", "decoder/layer_0/mlp/wi/kernel")]
    assert kernel["shape"] == [32, 64] and kernel["names"] == ["embed", "mlp"]
    assert kernel["spec"] == ["fsdp"] and kernel["bytes_per_device"] == kernel["bytes"] // 8
    moments = [
        leaf
        for leaf in report["leaves"]
        if leaf["field"] == "opt_state" and leaf["path"] == "decoder/layer_0/mlp/wi/kernel"
    ]
    assert len(moments) == 2  # Adam's mu and nu follow the kernel
    for moment in moments:
        assert moment["spec"] == ["fsdp"]
    total = report["bytes"]["total"]
    assert report["bytes"]["per_device"] <= 1.1 * total / 8 + 4096
    # A one-device process reads the fsdp=8 checkpoint (restored onto its own device).
    env = {k: v for k, v in multidevice_env().items() if k != "XLA_FLAGS"}
    generated = subprocess.run(
        [sys.executable, "-m", "genjax_models.cli", "generate", "--workdir", str(workdir),
         "--prompt", "def ", "--max-new", "4"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr[-2000:]
