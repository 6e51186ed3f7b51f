"""benchmarks/gemm_shapes.py: the products it times are the ones it names (shapes, transposes,
FLOPs), and a tiny run writes the JSON it prints, also through `genjax-models bench gemm`."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from genjax_models import cli

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = {"T": 16, "d": 8, "m": 32, "g": 6, "L": 4, "h": 2}


@pytest.fixture(scope="module")
def gemm(request):
    sys.path.insert(0, str(BENCHMARKS))
    request.addfinalizer(lambda: sys.path.remove(str(BENCHMARKS)))
    import gemm_shapes

    return gemm_shapes


def test_dims_parse_multiples_and_literals(gemm) -> None:
    assert gemm.dims("T,3d", TINY) == (16, 24)
    assert gemm.dims("g,L,h", TINY) == (6, 4, 2)
    assert gemm.dims("2048,2048", TINY) == (2048, 2048)


@pytest.mark.parametrize(
    "name, expected_shape",
    [
        ("qkv projection (forward)", (16, 24)),
        ("MLP in, input gradient dy @ W^T", (16, 8)),
        ("MLP out, weight gradient x^T @ dy", (32, 8)),
        ("attention scores q @ k^T (batched)", (6, 4, 4)),
        ("attention sum p @ v (batched)", (6, 4, 2)),
    ],
)
def test_each_row_is_the_product_it_names(gemm, name, expected_shape) -> None:
    import jax.numpy as jnp

    spec = gemm.SHAPE_ROWS[name]
    lhs, rhs, product = gemm.operands(spec, TINY)
    a = np.swapaxes(lhs, -1, -2) if spec[2] else lhs
    b = np.swapaxes(rhs, -1, -2) if spec[3] else rhs
    expected = np.matmul(a, b)
    assert expected.shape == expected_shape
    np.testing.assert_allclose(
        product(jnp.asarray(lhs), jnp.asarray(rhs)), expected, rtol=1e-4, atol=1e-4
    )
    multiply_adds = math.prod(expected.shape) * a.shape[-1]
    assert gemm.flops(lhs, rhs, spec) == 2 * multiply_adds


def test_kernel_names_from_hlo(gemm) -> None:
    assert (
        gemm.xla_kernel('fusion(...), backend_config={"kind":"__ynn_fusion"}') == "YNNPACK fusion"
    )
    assert gemm.xla_kernel("ROOT %dot.1 = f32[8,8]{1,0} dot(%a, %b)") == "XLA dot"
    assert gemm.xla_kernel('custom-call(...), custom_call_target="__cublas$gemm"').startswith(
        "library"
    )


def test_tiny_run_through_the_console_script(tmp_path, capsys) -> None:
    out = tmp_path / "gemm.json"
    rows = ["MLP in (forward)", "MLP in, weight gradient x^T @ dy"]
    argv = ["--batch-size", "2", "--length", "8", "--windows", "2", "--out", str(out)]
    cli.main(["bench", "gemm", *argv, "--rows", *rows])
    result = json.loads(out.read_text())
    assert result["benchmark"] == "gemm_shapes" and result["platform"] == "cpu"
    assert result["sizes"]["T"] == 16 and [r["name"] for r in result["rows"]] == rows
    forward, weight_gradient = result["rows"]
    assert forward["flops"] == 2 * 16 * 256 * 1024 == weight_gradient["flops"]
    assert weight_gradient["lhs"] == [16, 256] and weight_gradient["lhs_transposed"] is True
    known = {"YNNPACK fusion", "XNNPACK fusion", "XLA dot", "library call (custom-call)"}
    for row in result["rows"]:
        assert row["xla_kernel"] in known and row["jax_gflops_per_sec"] > 0
        if "torch" in result:  # the .[bench] extra installed
            assert math.isclose(
                row["jax_over_torch"], row["jax_gflops_per_sec"] / row["torch_gflops_per_sec"]
            )
    printed = capsys.readouterr().out
    assert "MLP in, weight gradient" in printed and f"wrote {out}" in printed


def test_bad_window_count_is_a_one_line_error(gemm, capsys) -> None:
    with pytest.raises(SystemExit):
        gemm.main(["--windows", "0"])
    err = capsys.readouterr().err
    assert "argument --windows: '0' is invalid: expected an integer >= 1" in err
    assert len(err.strip().splitlines()) == 1
