#!/bin/bash
# Here (CPU): export the four embedded models in the Hugging Face layout (bf16),
# pack them into one tar.gz cut into 62 MB parts under .dev/parts/, for the
# `device` tool to carry one part per call (each call carries at most 64 MiB).
# Usage: bash benchmarks/device/pack.sh   (from the repository root)
set -euo pipefail
EXPORTS="${GOA_EXPORTS:-$HOME/.local/share/goa/exports}"
for m in smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b; do
    [ -f "$EXPORTS/$m/goa-export.json" ] || .venv/bin/goa models export "$m" --to "$EXPORTS"
done
grep -qx '/.dev/' .git/info/exclude 2>/dev/null || echo '/.dev/' >> .git/info/exclude
rm -rf .dev/parts && mkdir -p .dev/parts
tar -C "$EXPORTS" -cf - smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b \
    | gzip -1 | split -b 62000000 -d -a 3 - .dev/parts/hf.part.
cat .dev/parts/hf.part.* | sha256sum | cut -d' ' -f1 > .dev/parts.sha256
# The MMLU sample (the device has no ../shared) and the wheels its Python 3.12 lacks.
mkdir -p .dev/data/benchmarks/test .dev/whl
cp ../shared/data/benchmarks/test/MMLU_sampled_test.json .dev/data/benchmarks/test/
core=$(.venv/bin/pip show pydantic-core | awk '/^Version/{print $2}')
for p in pydantic==2.14.4 "pydantic-core==$core" annotated-types==0.8.0 typing-inspection==0.4.5 \
         platformdirs==4.14.8 tenacity==9.2.1; do
    .venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .dev/whl "$p"
done
echo "$(ls .dev/parts | wc -l) parts, sha256 $(cat .dev/parts.sha256)"
