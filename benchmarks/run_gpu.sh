#!/usr/bin/env bash
# The GPU rows of the README's benchmark tables, in priority order, each under its own time limit
# (one failure does not stop the rest). Run from the repository root on a machine with one NVIDIA
# GPU and jax[cuda], flax, optax (torch with CUDA adds the PyTorch ratios; no TensorFlow needed):
#
#     benchmarks/run_gpu.sh [LOG_DIR]
#
# JSON lands in benchmarks/results/ (as every benchmark writes it; diagnostics, which are not
# README rows, in benchmarks/results/diagnostics/); LOG_DIR gets log.txt and a results.tgz of
# the GPU JSON, refreshed after every step.
set -u
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# JAX and the PyTorch reference share the GPU in one process: leave PyTorch room.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.6}"
# Each benchmark compiles its step ahead of time (for the compile time and XLA's FLOP count) and
# then through jit: with a persistent cache the second compile is a cache load.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/genjax_jax_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
PY="${PYTHON:-python3}"
LOG="${1:-/tmp/genjax_gpu_bench}"
mkdir -p "$LOG"

step() {  # step SECONDS COMMAND...
  local limit=$1
  shift
  echo "=== $(date +%T) [${limit}s] $*"
  timeout "$limit" "$@" 2>&1 | grep -v -e "^W0000" -e "^I0000" -e "^WARNING: All log messages"
  echo "=== exit ${PIPESTATUS[0]}"
  tar czf "$LOG/results.tgz" benchmarks/results/*-gpu-*.json benchmarks/results/diagnostics 2>/dev/null
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$PY" -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
  "$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
  S2S="benchmarks/bench_seq2seq.py --size base --dtype bfloat16 --length 512 --batch-size 32 --steps 10"
  S2S_PROFILE="seq2seq --size base --dtype bfloat16 --length 512 --batch-size 32 --attention cudnn --attention-dropout 0"
  LM_PROFILE="lm --size base --dtype bfloat16 --length 1024 --batch-size 16 --attention cudnn"
  step 150 "$PY" $S2S
  step 120 "$PY" $S2S --attention cudnn --attention-dropout 0
  step 60 "$PY" benchmarks/bench_gan.py --width 64 --batch-size 64 --steps 200
  LM="benchmarks/bench_lm.py --size base --dtype bfloat16 --length 1024 --batch-size 16 --steps 10"
  step 120 "$PY" $LM
  step 100 "$PY" $LM --attention cudnn
  step 90 "$PY" -m pytest -q -p no:cacheprovider tests/nn/test_attention_implementations.py \
    tests/nn/test_conv.py
  # Diagnostics (not README rows): where the cudnn seq2seq step's time goes, and the same step
  # without any dropout.
  step 90 "$PY" benchmarks/profile_step.py $S2S_PROFILE \
    --out benchmarks/results/diagnostics/profile-seq2seq-base-bfloat16-cudnn-gpu.json
  step 90 "$PY" benchmarks/profile_step.py $LM_PROFILE \
    --out benchmarks/results/diagnostics/profile-lm-base-bfloat16-cudnn-gpu.json
  step 100 "$PY" $S2S --dropout 0 --attention-dropout 0 --no-torch \
    --out benchmarks/results/diagnostics/seq2seq-base-bfloat16-nodropout-gpu.json
  step 60 "$PY" benchmarks/bench_gan.py --width 64 --batch-size 256 --steps 200
  step 60 "$PY" benchmarks/bench_gan.py --width 64 --batch-size 256 --dtype bfloat16 --steps 200
  step 90 "$PY" benchmarks/bench_decode.py --lengths 32 128 256
} 2>&1 | tee "$LOG/log.txt"
