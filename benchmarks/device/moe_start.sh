#!/bin/bash
# On the GPU machine, in the first call of a session (carrying .dev/whl): install the wheels
# the machine lacks into /tmp/site and start benchmarks.gpu_moe in the background (random
# weights, no files needed: it runs while the GGUF parts are being copied by later calls).
# It writes /root/moe/gpu-moe.json (after every batch) and /root/moe/out.txt; a later call
# copies them to $OUT (start.sh's caller: `cp /root/moe/gpu-moe.json /root/moe/out.txt $OUT/`).
# Env: MOE_BUDGET (seconds, default 230: done before the part copies are), MOE_ARGS (more
# arguments of benchmarks.gpu_moe). Its pid goes to /root/moe/pid: a later call can wait for it
# (`while kill -0 $(cat /root/moe/pid) 2>/dev/null; do sleep 5; done`) before loading the GPU.
set -euo pipefail
mkdir -p /root/xfer /root/moe
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .dev/whl/*.whl
# GPU_TESTS=1: the GPU-only tests of the transformers backend and static decoding (pytest -m gpu)
# first, into /root/moe/gpu-tests.txt
tests=true
[ "${GPU_TESTS:-0}" = 1 ] && tests="python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_static_decode.py tests/test_transformers_backend.py"
PYTHONPATH="/tmp/site:$PWD" PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True setsid nohup \
    bash -c "$tests > /root/moe/gpu-tests.txt 2>&1; exec python3 -m benchmarks.gpu_moe \"\$@\"" _ \
    --out /root/moe --budget-s "${MOE_BUDGET:-230}" ${MOE_ARGS:-} > /root/moe/out.txt 2>&1 < /dev/null &
echo $! > /root/moe/pid
echo "gpu_moe started (pid $!)"
