#!/usr/bin/env bash
# Installs a real OpenAI-compatible inference server for the AI tests:
# llama-cpp-python's OpenAI-compatible server (a FastAPI app on its llama.cpp
# bindings, not llama.cpp's own `llama-server`), from PyPI, with every
# package pinned (ghostflow-nodes/tests/peers/llama-server-requirements.txt).
# PyPI has only its source, so the first install compiles llama.cpp (about
# five minutes on two cores); it goes into a virtual environment outside the
# clone, kept for later runs, and is quick once there. The tests make their
# tiny random-weight model themselves (tests/peers/tiny_llama.py).
#
# The place is $GHOSTFLOW_CACHE/llama-cpp-python (default
# ~/.cache/ghostflow); the tests look there too.
set -euo pipefail
cd "$(dirname "$0")/.."

requirements=ghostflow-nodes/tests/peers/llama-server-requirements.txt
venv="${GHOSTFLOW_CACHE:-$HOME/.cache/ghostflow}/llama-cpp-python"
stamp="$venv/.installed"

# Installed, from these very requirements? (Their comments do not count.)
pins() { grep -v '^#' "$1"; }
if [ -f "$stamp" ] && cmp -s <(pins "$stamp") <(pins "$requirements"); then
    echo "services: llama-cpp-python's server is installed in $venv"
    exit 0
fi

echo "services: installing llama-cpp-python's server into $venv (compiles llama.cpp: minutes)"
started=$(date +%s)
rm -rf "$venv"
python3 -m venv "$venv"
# A portable CPU build without the parts the tests do not use: no
# multimodal library, no downloads, no OpenMP, no llama.cpp tools.
CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_CURL=OFF -DGGML_OPENMP=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$requirements"
"$venv/bin/python" -c 'import llama_cpp.server, gguf'
cp "$requirements" "$stamp"
echo "services: llama-cpp-python's server installed in $(( $(date +%s) - started )) s"
