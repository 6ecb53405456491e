#!/usr/bin/env bash
# Runs reference.py (llama.cpp, through llama-cpp-python) with the arguments given:
#   plugins/chatty-ai/reference/llama-cpp.sh fixtures MODEL OUT.json
#   plugins/chatty-ai/reference/llama-cpp.sh bench MODEL THREADS
# On first use it builds llama-cpp-python 0.3.36 from PyPI into target/llama-cpp (a few
# minutes on 2 cores), for the CPU's vector units but without AMX: llama.cpp's AMX
# kernels crash on the first evaluation on some machines (ggml_backend_amx_mul_mat).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
venv="$repo/target/llama-cpp"
if ! "$venv/bin/python" -c 'import llama_cpp' 2>/dev/null; then
    echo "building llama-cpp-python into $venv (once; minutes)" >&2
    python3 -m venv "$venv"
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
        -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON \
        -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "llama-cpp-python==0.3.36" numpy
fi
exec "$venv/bin/python" "$(dirname "$0")/reference.py" "$@"
