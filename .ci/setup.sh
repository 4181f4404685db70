#!/usr/bin/env bash
# Sets everything up on a fresh machine: a virtual environment in .venv with the
# pinned dependencies, llama.cpp compiled for a portable CPU target, and goa
# installed in editable mode. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi

# The default llama.cpp build crashes on this CPU ("Illegal instruction": it reports
# AMX but cannot run it); this portable build works. pip caches the compiled wheel,
# so only the first setup on a machine pays the ~9 minutes.
export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"

.venv/bin/python -m pip install --quiet --disable-pip-version-check "pip==25.3"
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    --constraint .ci/constraints.txt --editable ".[local,dev,gpu,serve]"
# JSON-schema grammars for the transformers backend (goa/inference/json_grammar.py).
# --no-deps: xgrammar lists triton, which only its CUDA kernels use (torch's CUDA builds
# bring it on a GPU machine).
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
    "xgrammar==0.2.9" "apache-tvm-ffi==0.1.15.post2"
