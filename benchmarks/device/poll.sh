#!/bin/bash
# On the GPU machine: follow the background evaluation (and the BIG-Bench Mistake run, when
# start.sh started one) for up to $1 seconds, then copy what they have to $OUT: the logs
# always, the results of whichever has finished.
pid=$(cat /root/run/pid); t0=$(date +%s)
bbm=$(cat /root/run/bbm.pid 2>/dev/null || echo 0)
daan=$(cat /root/run/daan.pid 2>/dev/null || echo 0)
alive() { [ "$1" != 0 ] && kill -0 "$1" 2>/dev/null; }
running() { alive "$pid" || alive "$bbm" || alive "$daan"; }
while running && [ $(( $(date +%s) - t0 )) -lt "${1:-540}" ]; do
    sleep 20
    echo "--- $(( $(date +%s) - t0 ))s: $(grep -av 'it/s' /root/run/out.txt | tail -1)"
    [ "$bbm" != 0 ] && echo "    bbm: $(tail -n 1 /root/run/bbm.txt 2>/dev/null | cut -c1-160)"
    [ "$daan" != 0 ] && echo "    daan: $(wc -l < /root/run/daan/daan-whowhen.cases.jsonl 2>/dev/null) attributions"
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
done
gzip -c /root/run/eval-real-local.jsonl > "$OUT/eval-real-local.jsonl.gz" 2>/dev/null
grep -av 'it/s' /root/run/out.txt | tail -c 20000 > "$OUT/out.txt"
if [ "$pid" != 0 ] && ! kill -0 "$pid" 2>/dev/null; then
    # (the working tree is copied afresh by each call: results there can be the committed ones;
    # rebuild them from the log with --summarize-only)
    cp benchmarks/results/eval-real-local.json benchmarks/results/eval-real-local.md \
        benchmarks/results/eval-real-local-samples.csv "$OUT/" 2>/dev/null
    echo FINISHED
fi
if [ "$bbm" != 0 ]; then
    gzip -c /root/run/audit-bbm-llm.votes.jsonl > "$OUT/audit-bbm-llm.votes.jsonl.gz" 2>/dev/null
    grep -av 'it/s' /root/run/bbm.txt | tail -c 8000 > "$OUT/bbm.txt"
    kill -0 "$bbm" 2>/dev/null || { cp /root/run/bbm-llm/audit-bbm-llm.json "$OUT/" 2>/dev/null; echo BBM FINISHED; }
fi
if [ -f /root/run/daan.txt ]; then
    grep -av 'it/s' /root/run/daan.txt | tail -c 6000 > "$OUT/daan.txt"
    gzip -c /root/run/daan/daan-whowhen.cases.jsonl > "$OUT/daan-whowhen.cases.jsonl.gz" 2>/dev/null
    cp /root/run/daan/daan-whowhen.json "$OUT/" 2>/dev/null
    alive "$daan" || echo DAAN FINISHED
fi
