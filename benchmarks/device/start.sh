#!/bin/bash
# On the GPU machine, after every part of pack.sh was copied to /root/xfer:
# check and unpack the GGUF files, export their weights in the HF layout, then
# start the evaluation in the background (setsid: it outlives this call while the
# machine stays warm).
# Env: LIMIT (500), CONC (128 questions in flight per method), MAXB (256), BUDGET (s), METHODS,
# RESERVE (GiB handed to PyTorch's allocator by each model's process at its first load: 0),
# THROUGHPUT (1: run benchmarks.transformers_throughput first), DIAG (1: decoding-step
# diagnostic of a random 1.5B-shaped model while the weights are exported), RESUME (a gzipped
# per-sample log of an earlier run, in the working tree, to continue from), BBM (1: also start
# benchmarks.audit_bbm_llm, continuing from the gzipped votes file BBM_VOTES, for BBM_BUDGET s),
# REPORT (methods to report from the log, when METHODS continues only some), RETRY (1: run again
# the logged questions whose model calls failed), DAAN (a card id: also start
# benchmarks.daan_whowhen with that local model as the judge, into /root/run/daan, DAAN_CONC
# attributions at a time, continuing from the gzipped cases file DAAN_CASES when given, with
# GOA_MAX_BATCH_TOKENS=DAAN_BATCH_TOKENS when given), EVAL (0: no evaluation, e.g. a judge run
# alone), MODELS (the models to export: those whose GGUF file came, by default).
set -euo pipefail
export PYTHONUNBUFFERED=1
[ -d .dev/whl ] && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .dev/whl/*.whl
mkdir -p /root/exports /root/models /root/run /root/goa-data /root/shared-data
cp -r .dev/data/* /root/shared-data/
got=$(cat /root/xfer/hf.part.* | sha256sum | cut -d' ' -f1)
[ "$got" = "$(cat .dev/parts.sha256)" ] || { echo "SHA-256 MISMATCH: $got"; exit 1; }
cat /root/xfer/hf.part.* | tar -xf - -C /root/models
tar -xzf .dev/small/exports.tgz -C /root/exports
export PYTHONPATH=/tmp/site GOA_MODELS_DIR=/root/models GOA_DATA_DIR=/root/goa-data
# Each model's weights dequantised in its own process (the tokenizer files came along).
t0=$(date +%s)
if [ "${DIAG:-1}" = 1 ]; then  # ms/step as the backend now decodes (cuDNN attention off)
    (for b in 64 256; do PYTHONPATH="/tmp/site:$PWD" PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True python3 \
        benchmarks/device/decode_diag.py /root/exports/qwen2.5-coder-1.5b --batch $b --tokens 32 \
        --label "cudnn-off-b$b"; done > /root/run/diag.txt 2>&1) &
fi
for m in ${MODELS:-smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b}; do
    [ -f "/root/exports/$m/model.safetensors" ] && continue  # exported by an earlier call
    python3 -c "from goa.inference.local_models import is_present; assert is_present('$m')" \
        2> /dev/null || continue  # its GGUF file did not come (pack.sh MODELS=...)
    python3 -c "from pathlib import Path; from goa.inference.hf_export import export_model; \
export_model('$m', Path('/root/exports'), tokenizer=False)" > "/root/run/export-$m.txt" 2>&1 &
done
wait
tail -qn 1 /root/run/export-*.txt
grep -s '^{' /root/run/diag.txt || true
echo "exported in $(( $(date +%s) - t0 )) s"
(cd /root/exports && sha256sum -c --ignore-missing "$OLDPWD/.dev/small/weights.sha256") \
    || echo "WEIGHTS DIFFER from here"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
export GOA_TRANSFORMERS_DIR=/root/exports GOA_DATA_DIR=/root/goa-data \
    GOA_SHARED_DATA=/root/shared-data GOA_LOCAL_ENGINE=transformers GOA_MAX_BATCH="${MAXB:-256}" \
    GOA_CUDA_RESERVE_GB="${RESERVE:-0}" TOKENIZERS_PARALLELISM=false \
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
if [ "${THROUGHPUT:-1}" = 1 ]; then  # tokens/s by batch size first (about a minute)
    python3 -m benchmarks.transformers_throughput --batches 1,64,256 --max-tokens 128 2>&1 \
        | grep -v 'it/s' | tail -20
    cp benchmarks/results/transformers-throughput.json "$OUT/" || true
fi
# The methods the issue asks for (paper GoA and its best variant, every single model for the
# best single, MoA, Self-MoA, vote); METHODS=all runs every method of the benchmark.
singles=single-smollm2-135m,single-gemma3-270m,single-qwen2.5-coder-0.5b,single-qwen2.5-coder-1.5b
METHODS="${METHODS:-$singles,goa,goa-majority-exit,moa,self-moa,vote}"
args=(--limit "${LIMIT:-500}" --concurrency "${CONC:-128}" --budget-s "${BUDGET:-900}")
[ "$METHODS" != all ] && args+=(--methods "$METHODS")
[ -n "${REPORT:-}" ] && args+=(--report "$REPORT")  # e.g. every method, when continuing a few
[ "${RETRY:-0}" = 1 ] && args+=(--retry-failed)
if [ -n "${RESUME:-}" ] && [ ! -s /root/run/eval-real-local.jsonl ]; then
    gunzip -c "$RESUME" > /root/run/eval-real-local.jsonl
    echo "resuming from $RESUME: $(wc -l < /root/run/eval-real-local.jsonl) samples"
fi
if [ "${BBM:-0}" = 1 ]; then  # BIG-Bench Mistake with the real models as evaluators (issue 6)
    [ -n "${BBM_VOTES:-}" ] && [ ! -s /root/run/audit-bbm-llm.votes.jsonl ] \
        && gunzip -c "$BBM_VOTES" > /root/run/audit-bbm-llm.votes.jsonl
    # The memory check (goa.inference.memory_budget) runs in the evaluation's process; the
    # benchmarks beside it load their own copies later and would count the evaluation's
    # cached memory as taken, so they skip it.
    GOA_MEMORY_CHECK=0 setsid nohup python3 -m benchmarks.audit_bbm_llm --limit 40 --concurrency 1024 \
        --budget-s "${BBM_BUDGET:-400}" --votes /root/run/audit-bbm-llm.votes.jsonl \
        --out /root/run/bbm-llm > /root/run/bbm.txt 2>&1 < /dev/null &
    echo $! > /root/run/bbm.pid
fi
if [ -n "${DAAN:-}" ]; then  # Who&When attribution with a real local judge (issue 7)
    mkdir -p /root/run/daan
    [ -n "${DAAN_CASES:-}" ] && [ ! -s /root/run/daan/daan-whowhen.cases.jsonl ] \
        && gunzip -c "$DAAN_CASES" > /root/run/daan/daan-whowhen.cases.jsonl
    GOA_MAX_BATCH_TOKENS="${DAAN_BATCH_TOKENS:-${GOA_MAX_BATCH_TOKENS:-524288}}" \
    GOA_MEMORY_CHECK=0 setsid nohup python3 -m benchmarks.daan_whowhen --judge "local:$DAAN" \
        --concurrency "${DAAN_CONC:-32}" --budget-s "${DAAN_BUDGET:-420}" --resume \
        --out /root/run/daan > /root/run/daan.txt 2>&1 < /dev/null &
    echo $! > /root/run/daan.pid
fi
if [ "${EVAL:-1}" = 1 ]; then
    setsid nohup python3 -m benchmarks.eval_real_local "${args[@]}" \
        --log /root/run/eval-real-local.jsonl \
        --command "GOA_LOCAL_ENGINE=transformers GOA_MAX_BATCH=${MAXB:-256} PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True python -m benchmarks.eval_real_local ${args[*]}" \
        > /root/run/out.txt 2>&1 < /dev/null &
    echo $! > /root/run/pid
else
    echo 0 > /root/run/pid; : > /root/run/out.txt
fi
echo started
