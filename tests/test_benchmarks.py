"""Each benchmark script runs on a tiny config and writes a complete, consistent JSON result
(benchmarks are not timed here: only that they run, count, and report what they claim)."""

from __future__ import annotations

import importlib
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench(request):
    sys.path.insert(0, str(BENCHMARKS))
    request.addfinalizer(lambda: sys.path.remove(str(BENCHMARKS)))
    return lambda name: importlib.import_module(name)


def check_training_result(result: dict, path: Path) -> None:
    assert json.loads(path.read_text()) == json.loads(json.dumps(result))
    jax_result = result["jax"]
    assert jax_result["steps_per_sec"] > 0 and jax_result["compile_seconds"] > 0
    assert len(jax_result["window_steps_per_sec"]) == 2
    assert jax_result["recompilations_after_warmup"] == 0
    assert jax_result["jit_programs_after_warmup"] == 1
    # The analytic FLOPs (genjax_models.flops) near XLA's count of the timed program (XLA leaves
    # out convolution taps on the zero padding: a DCGAN's analytic count is up to ~1.2x XLA's).
    assert 0.8 < result["model_flops_per_step"] / jax_result["xla_flops_per_step"] < 1.25
    assert result["platform"] == "cpu" and result["peak_source"].startswith("measured")
    assert result["cpu_runtime"] == "default"  # in-process: the test process started JAX first
    assert math.isclose(
        result["mfu"], result["achieved_flops_per_sec"] / result["peak_flops_per_sec"]
    )
    assert result["measured_gemm"]["flops_per_sec"] > 0
    if result.get("torch") is not None:  # torch installed (the .[bench] extra)
        assert result["torch"]["torch_device"] == "cpu"
        assert math.isclose(
            result["jax_over_torch"],
            jax_result["steps_per_sec"] / result["torch"]["steps_per_sec"],
        )


def test_bench_gan_tiny(bench, tmp_path) -> None:
    out = tmp_path / "gan.json"
    argv = ["--width", "8", "--batch-size", "4", "--steps", "2", "--windows", "2"]
    result = bench("bench_gan").main([*argv, "--out", str(out)])
    check_training_result(result, out)
    assert result["images_per_sec"] == pytest.approx(4 * result["jax"]["steps_per_sec"])


def test_bench_gan_options_tiny(bench, tmp_path) -> None:
    """Each option's row: steps/s, its time relative to the plain step (1.0 for plain), no
    recompilation; unknown option names are one line."""
    out = tmp_path / "options.json"
    argv = ["--width", "8", "--image-size", "16", "--batch-size", "8", "--steps", "1"]
    argv += ["--windows", "1", "--options", "lazy_r1_16,pack_2", "--out", str(out)]
    result = bench("bench_gan_options").main(argv)
    assert json.loads(out.read_text())["rows"] == result["rows"]
    assert [row["option"] for row in result["rows"]] == ["plain", "lazy_r1_16", "pack_2"]
    assert result["rows"][0]["time_vs_plain"] == 1.0
    for row in result["rows"]:
        assert row["steps_per_sec"] > 0 and row["recompilations_after_warmup"] == 0
    with pytest.raises(SystemExit, match="unknown r3; expected some of plain, gp"):
        bench("bench_gan_options").main(["--options", "r3"])


def test_bench_seq2seq_tiny(bench, tmp_path) -> None:
    out = tmp_path / "seq2seq.json"
    argv = ["--batch-size", "2", "--length", "8", "--steps", "2", "--windows", "2"]
    result = bench("bench_seq2seq").main([*argv, "--dropout", "0", "--out", str(out)])
    check_training_result(result, out)
    assert result["config"]["dropout_rate"] == 0.0 and result["config"]["attention"] == "xla"
    assert result["tokens_per_sec"] == pytest.approx(2 * 16 * result["jax"]["steps_per_sec"])


def test_bench_lm_tiny(bench, tmp_path) -> None:
    out = tmp_path / "lm.json"
    argv = ["--batch-size", "2", "--length", "16", "--generate", "8", "--steps", "2"]
    result = bench("bench_lm").main([*argv, "--windows", "2", "--out", str(out)])
    check_training_result(result, out)
    assert result["generate_tokens_per_sec"] > 0


def test_bench_blocks_tiny(bench, tmp_path) -> None:
    """Compile rows per depth and stack, a remat row per policy and stack, and KV-cache bytes in
    exact proportion to the KV heads (8 query heads: 8, 4, 2, 1 KV heads)."""
    out = tmp_path / "blocks.json"
    argv = ["--depths", "1,2", "--remat-length", "32", "--remat-batch", "2", "--steps", "1"]
    result = bench("bench_blocks").main([*argv, "--windows", "1", "--out", str(out)])
    assert json.loads(out.read_text())["benchmark"] == "blocks"
    assert [(r["scan_layers"], r["num_layers"]) for r in result["compile"]] == [
        (False, 1), (False, 2), (True, 1), (True, 2)
    ]  # fmt: skip
    assert all(r["compile_seconds"] > 0 for r in result["compile"])
    assert [(r["scan_layers"], r["remat"]) for r in result["remat"]] == [
        (scan, policy) for scan in (True, False) for policy in ("none", "minimal", "full")
    ]
    assert all(r["temp_bytes"] > 0 and r["steps_per_sec"] > 0 for r in result["remat"])
    assert [r["vs_multi_head"] for r in result["kv_cache"]] == [1.0, 0.5, 0.25, 0.125]
    # 4 layers x (keys + values) x batch 8 x 1024 positions x 64 dims per head, float32
    assert result["kv_cache"][0]["kv_cache_bytes"] == 4 * 2 * 8 * 1024 * 8 * 64 * 4


def test_report_renders_every_committed_result(bench) -> None:
    """Every JSON under benchmarks/results/ becomes a table row (GPU rows with both MFUs)."""
    report = bench("report")
    results = report.load_results()
    table = report.markdown(results)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    decode_rows = sum(len(r["results"]) for r in results if r["benchmark"] == "decode")
    blocks = [r for r in results if r["benchmark"] == "blocks"]
    blocks_rows = sum(
        len(r[s]) + 1 for r in blocks for s in ("compile", "remat", "kv_cache") if s in r
    )
    training = sum(r["benchmark"] not in ("decode", "blocks") for r in results)
    assert len(rows) == training + decode_rows + 2 + blocks_rows  # + headers (one per table)
    assert blocks, "benchmarks/results/ holds a bench_blocks.py result"
    # every GPU training row: MFU against the data sheet and (in brackets) the measured GEMM
    gpu_training_rows = [r for r in rows if r.startswith("| NVIDIA") and "steps/s" in r]
    training_gpu = [r for r in results if r["platform"] == "gpu" and r["benchmark"] != "decode"]
    assert len(gpu_training_rows) == len(training_gpu)
    assert all("of measured GEMM" in row for row in gpu_training_rows)


def test_run_gpu_script_is_valid_bash() -> None:
    done = subprocess.run(["bash", "-n", str(BENCHMARKS / "run_gpu.sh")], capture_output=True)
    assert done.returncode == 0, done.stderr


def test_compare_windows_alternates_the_workloads(bench) -> None:
    common = bench("common")
    calls: list[tuple[str, int]] = []

    def workload(name: str):
        return common.Prepared(lambda n: calls.append((name, n)), lambda: {"name": name})

    ours, theirs = common.compare_windows([workload("jax"), workload("torch")], 3, 4)
    assert [name for name, _ in calls] == ["jax", "torch", "torch", "jax"] * 2
    assert all(n == 3 for _, n in calls)
    for result, name in ((ours, "jax"), (theirs, "torch")):
        assert result["name"] == name and len(result["window_steps_per_sec"]) == 4
        assert result["steps_per_sec"] == statistics.median(result["window_steps_per_sec"]) > 0


def test_torch_seq2seq_reference_refuses_configs_it_does_not_implement(bench) -> None:
    pytest.importorskip("torch")
    import dataclasses

    from genjax_models.configs import TransformerConfig

    make_step = bench("torch_reference.transformer").make_step
    config = TransformerConfig(d_model=32, num_heads=2, mlp_dim=64)
    for name, value in [("activation", "gelu"), ("share_embeddings", False)]:
        with pytest.raises(ValueError, match=f"{name}=.*--no-torch"):
            make_step(dataclasses.replace(config, **{name: value}))


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, argv, per_step",
    [
        ("gan", ["--width", "8"], None),
        ("seq2seq", ["--length", "8", "--dropout", "0"], 2 * 8),
        ("lm", ["--length", "16", "--generate", "8"], 16),
    ],
)
def test_bench_devices_runs_data_parallel(tmp_path, name, argv, per_step) -> None:
    """``genjax-models bench NAME --devices 2`` on two simulated CPU devices: the batch is split
    over a two-device mesh, no PyTorch reference, 0 recompilations, ``-d2`` in the file name."""
    import os

    out = tmp_path / f"{name}-d2.json"
    # LLVM -O0: this checks what the script runs and reports, not its speed (compiles halve)
    flags = "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
    env = {**os.environ, "XLA_FLAGS": flags}
    common = ["--batch-size", "4", "--steps", "2", "--windows", "2", "--devices", "2"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "genjax_models.cli",
            "bench",
            name,
            *argv,
            *common,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["devices_used"] == 2 and result["device_count"] == 2
    assert result["jax"]["recompilations_after_warmup"] == 0
    assert result["jax"]["jit_programs_after_warmup"] == 1
    assert result.get("torch") is None and result.get("jax_over_torch") is None
    if per_step:
        rate = result["tokens_per_sec"] / result["jax"]["steps_per_sec"]
        assert rate == pytest.approx(4 * per_step)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, mesh",
    [
        ("lm", "data=8"),
        ("lm", "fsdp=8"),
        ("lm", "fsdp=2,tensor=4"),
        ("seq2seq", "fsdp=8"),
        ("seq2seq", "fsdp=2,tensor=4"),
    ],
)
def test_bench_mesh_reports_bytes_per_device(tmp_path, name: str, mesh: str) -> None:
    """``bench lm|seq2seq --mesh`` on 8 simulated devices (the small configs, 12M/10M
    parameters): one device holds the whole state on data=8 and within 10% of 1/8 of it on
    fsdp=8 and on (fsdp=2, tensor=4), measured from the placed arrays' shards (vocabulary 512:
    the byte vocabulary's 259 rows do not divide tensor=4); the step's temporary bytes per device
    are reported beside it."""
    import os

    out = tmp_path / "mesh.json"
    flags = "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
    extra = ["--generate", "2"] if name == "lm" else ["--dropout", "0"]
    done = subprocess.run(
        [
            sys.executable, "-m", "genjax_models.cli", "bench", name, "--batch-size", "8",
            "--length", "16", "--steps", "1", "--windows", "1", "--vocab-size", "512",
            "--mesh", mesh, *extra, "--out", str(out),
        ],
        capture_output=True, text=True, env={**os.environ, "XLA_FLAGS": flags}, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "state per device" in done.stdout
    result = json.loads(out.read_text())
    assert result["mesh"] == mesh and result["devices_used"] == 8
    assert result["jax"]["recompilations_after_warmup"] == 0
    memory = result["jax"]["memory"]
    assert memory["temp_bytes_per_device"] > 0
    fraction = memory["state_bytes_max_per_device"] / memory["state_bytes_total"]
    if mesh == "data=8":
        assert fraction == 1.0
    else:
        assert 1 / 8 <= fraction <= 1.1 / 8, fraction


def test_bench_flag_errors_are_one_line_before_any_work() -> None:
    for argv, needle in [
        (["gan", "--devices", "2"], "devices=2 but only 1 cpu device(s) are available"),
        (["seq2seq", "--steps", "0"], "argument --steps: '0' is invalid: expected an integer >= 1"),
        (["decode", "--beam-size", "0"], "argument --beam-size: '0' is invalid"),
        (["lm", "--size", "huge"], "argument --size: invalid choice: 'huge'"),
        (["blocks", "--sections", "speed"], "--sections speed: expected some of"),
        (["blocks", "--depths", "2,x"], "--depths '2,x': expected comma-separated integers"),
        (["lm", "--mesh", "fsdp=2"], "--mesh data=1,fsdp=2,tensor=1 has 2 devices but this run"),
        (["lm", "--mesh", "fsdp=1", "--devices", "1"], "--devices and --mesh both given"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "genjax_models.cli", "bench", *argv],
            capture_output=True,
            text=True,
            timeout=300,
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, (argv, done.stderr[-2000:])
        assert lines[0].startswith("genjax-models: error: ") and needle in lines[0], lines


def test_torch_lm_reference_is_the_same_model(bench) -> None:
    """The PyTorch LM has the JAX LM's parameter count and refuses configs it does not build."""
    pytest.importorskip("torch")
    import dataclasses

    import jax
    import jax.numpy as jnp

    from genjax_models.configs import LMConfig
    from genjax_models.models.decoder_only import make_lm

    make_step = bench("torch_reference.lm").make_step
    config = LMConfig(d_model=32, num_heads=2, num_layers=2, mlp_dim=64, max_len=16)
    _, model = make_step(config)
    params = make_lm(config).init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]
    assert sum(p.numel() for p in model.parameters()) == sum(
        x.size for x in jax.tree.leaves(params)
    )
    with pytest.raises(ValueError, match="norm='rmsnorm': the PyTorch reference implements only"):
        make_step(dataclasses.replace(config, norm="rmsnorm"))
