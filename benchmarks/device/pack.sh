#!/bin/bash
# Here (CPU): prepare what the GPU machine needs for benchmarks/device/start.sh.
# - .dev/parts/: the four embedded GGUF files (Q4, about 2 GB: half the size of a
#   bf16 export), tarred and cut into 60 MB parts, for the `device` tool to carry
#   one part per call (each call carries at most 64 MiB, the working tree included: about
#   5 MB now), and .dev/parts.sha256.
# - .dev/small/exports.tgz: the tokenizer, config and manifest files of this
#   machine's HF exports (`goa models export`), so that the GPU machine only
#   dequantises weights (the tokenizer is the slow part of reading a GGUF file),
#   and .dev/small/weights.sha256: the SHA-256 of each export's weights here,
#   which the GPU machine's own export is checked against.
# - .dev/whl/: the wheels its Python 3.12 lacks; .dev/data/: the MMLU sample and BIG-Bench
#   Mistake and Who&When (for benchmarks.audit_bbm_llm and benchmarks.daan_whowhen).
# Usage: bash benchmarks/device/pack.sh   (from the repository root); MODELS="a b" packs
# only those models' GGUF files (a Who&When judge run needs one: fewer parts to carry).
set -euo pipefail
EXPORTS="${GOA_EXPORTS:-$HOME/.local/share/goa/exports}"
read -r -a MODELS <<< "${MODELS:-smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b}"
files=()
for m in "${MODELS[@]}"; do
    [ -f "$EXPORTS/$m/goa-export.json" ] || .venv/bin/goa models export "$m" --to "$EXPORTS"
    files+=("$(.venv/bin/python -c "from goa.inference import local_models as l; print(l.ensure_model('$m').name)")")
done
MODELS_DIR=$(.venv/bin/python -c "from goa import paths; print(paths.models_dir())")
grep -qx '/.dev/' .git/info/exclude 2>/dev/null || echo '/.dev/' >> .git/info/exclude
rm -rf .dev/parts .dev/small && mkdir -p .dev/parts .dev/small
tar -C "$MODELS_DIR" -cf - "${files[@]}" | split -b 60000000 -d -a 3 - .dev/parts/hf.part.
cat .dev/parts/hf.part.* | sha256sum | cut -d' ' -f1 > .dev/parts.sha256
(cd "$EXPORTS" && tar -czf - --exclude model.safetensors "${MODELS[@]}") > .dev/small/exports.tgz
(cd "$EXPORTS" && sha256sum */model.safetensors) > .dev/small/weights.sha256
mkdir -p .dev/data/benchmarks/test .dev/whl
cp ../shared/data/benchmarks/test/MMLU_sampled_test.json .dev/data/benchmarks/test/
mkdir -p .dev/data/trust && cp -r ../shared/data/trust/big-bench-mistake \
    ../shared/data/trust/who-and-when .dev/data/trust/
core=$(.venv/bin/pip show pydantic-core | awk '/^Version/{print $2}')
for p in pydantic==2.14.4 "pydantic-core==$core" annotated-types==0.8.0 typing-inspection==0.4.5 \
         platformdirs==4.14.8 tenacity==9.2.1 gguf==0.19.0 xgrammar==0.2.9 \
         apache-tvm-ffi==0.1.15.post2; do
    .venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .dev/whl "$p"
done
echo "$(ls .dev/parts | wc -l) parts, sha256 $(cat .dev/parts.sha256)"
