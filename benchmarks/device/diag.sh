#!/bin/bash
# On the GPU machine: decoding-step diagnostics (benchmarks/device/decode_diag.py) on
# randomly initialised models shaped like the local ones. Carry .dev/whl and .dev/prof.
set -uo pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .dev/whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
mkdir -p /root/prof && tar -xzf .dev/prof/cfg.tgz -C /root/prof
nproc; lscpu | grep -m1 'Model name'; nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)"
Q=/root/prof/qwen2.5-coder-1.5b G=/root/prof/gemma3-270m T=${TOKENS:-32}
D="python3 benchmarks/device/decode_diag.py"
$D $Q --batch 1 --tokens $T
$D $Q --batch 64 --tokens $T
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True $D $Q --batch 64 --tokens $T --label expandable
GOA_CUDA_RESERVE_GB=80 $D $Q --batch 64 --tokens $T --label reserve80
$D $G --batch 64 --tokens $T
$D $Q --batch 64 --tokens $T --profile --label profile
$D $Q --batch 64 --tokens $T --threads 4 --label threads4
for i in 1 2 3 4; do $D $Q --batch 64 --tokens $T --label proc$i & done; wait
