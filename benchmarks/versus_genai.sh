#!/usr/bin/env bash
# edgegen against onnxruntime-genai on the same Qwen2.5-0.5B-shaped checkpoint (random weights), same machine,
# same 128-token prompt, 64 new tokens, 2 threads, in one process, alternating run by run (`edgegen bench`).
# Needs the export and bench extras plus `pip install onnxruntime-genai`. Results: benchmarks/results/genai_*.json
set -euo pipefail
WORK=${1:-/tmp/edgegen-bench}
HERE=$(cd "$(dirname "$0")" && pwd)
RESULTS=$HERE/results
CKPT=$WORK/qwen05b-24l
python -c "import sys; sys.path.insert(0, '$HERE'); from pathlib import Path; from decode_loop import make_checkpoint
make_checkpoint(Path('$CKPT'), 24)"
for precision in fp32 int4; do
    [ -f "$WORK/genai-$precision/genai_config.json" ] || \
        python -m onnxruntime_genai.models.builder -m "$CKPT" -o "$WORK/genai-$precision" -p $precision -e cpu \
            -c "$WORK/hf-cache"
done
for dtype in fp32 int8 int4; do
    [ -f "$WORK/eg-$dtype/edgegen.json" ] || edgegen export "$CKPT" "$WORK/eg-$dtype" --dtype $dtype --max-context 4096
done
bench() {  # edgegen model, genai model, output name
    edgegen bench "$1" --configs ar --prompt-tokens 128 --max-new-tokens 64 --repeat 5 --warmup 1 --threads 2 \
        --provider cpu --compare onnxruntime-genai --genai-model "$2" --json > "$RESULTS/$3.json"
}
bench "$WORK/eg-fp32" "$WORK/genai-fp32" genai_fp32
bench "$WORK/eg-int4" "$WORK/genai-int4" genai_int4
bench "$WORK/eg-int8" "$WORK/genai-int4" genai_int8_vs_int4
