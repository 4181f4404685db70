#!/bin/bash
# On the GPU machine: follow the background evaluation for up to $1 seconds, then
# copy what it has (the log always; the results once it has finished) to $OUT.
pid=$(cat /root/run/pid); t0=$(date +%s)
while kill -0 "$pid" 2>/dev/null && [ $(( $(date +%s) - t0 )) -lt "${1:-540}" ]; do
    sleep 20
    echo "--- $(( $(date +%s) - t0 ))s: $(grep -av 'it/s' /root/run/out.txt | tail -1)"
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
done
gzip -c /root/run/eval-real-local.jsonl > "$OUT/eval-real-local.jsonl.gz" 2>/dev/null
grep -av 'it/s' /root/run/out.txt | tail -c 20000 > "$OUT/out.txt"
if ! kill -0 "$pid" 2>/dev/null; then
    cp benchmarks/results/eval-real-local.json benchmarks/results/eval-real-local.md \
        benchmarks/results/eval-real-local-samples.csv "$OUT/" 2>/dev/null
    echo FINISHED
fi
