#!/usr/bin/env bash
# edgegen against onnxruntime-genai (its AR and its n-gram speculation) on the same weights, same machine,
# 2 threads, in one process, configurations in a shuffled order prompt by prompt (`edgegen bench`):
#   1. the bundled MARS model, whose HF checkpoint is rebuilt from its ONNX weights for genai's builder,
#      on held-out code-completion prompts (standard-library functions it never saw) and on all 80;
#   2. a Qwen2.5-0.5B-shaped checkpoint (random weights) in fp32 and int4, on the same code prompts.
# Needs the export and bench extras (onnxruntime-genai is in bench). Results: benchmarks/results/genai_*.json
#   bash benchmarks/versus_genai.sh [WORK_DIR] [bundled|q05|all]
set -euo pipefail
WORK=${1:-/tmp/edgegen-bench}
PART=${2:-all}
HERE=$(cd "$(dirname "$0")" && pwd)
RESULTS=$HERE/results
mkdir -p "$WORK"
grep '"task": "complete"' "$HERE/data/heldout_prompts.jsonl" > "$WORK/complete.jsonl"
head -n 10 "$WORK/complete.jsonl" > "$WORK/complete10.jsonl"
bench() {  # edgegen model, genai model, prompts, max new tokens, repeats, output name, configs...
    local model=$1 genai=$2 prompts=$3 tokens=$4 repeats=$5 name=$6
    shift 6
    edgegen bench "$model" --prompts "$prompts" --configs "$@" --max-new-tokens "$tokens" --repeat "$repeats" \
        --warmup 1 --threads 2 --provider cpu --compare onnxruntime-genai --genai-model "$genai" --json \
        > "$RESULTS/$name.json"
}

if [ "$PART" != q05 ]; then
    BUNDLED=$(python -c "from edgegen.models import DEFAULT_MODEL; print(DEFAULT_MODEL)")
    [ -f "$WORK/default-hf/config.json" ] || python "$HERE/checkpoint_from_onnx.py" "$BUNDLED" "$WORK/default-hf"
    [ -f "$WORK/genai-default/genai_config.json" ] || python -m onnxruntime_genai.models.builder \
        -i "$WORK/default-hf" -o "$WORK/genai-default" -p fp32 -e cpu -c "$WORK/hf-cache"
    bench "$BUNDLED" "$WORK/genai-default" "$WORK/complete.jsonl" 128 5 genai_bundled_code \
        ar verify verify:lookup verify:mask verify@4 threshold:0.9
    bench "$BUNDLED" "$WORK/genai-default" "$HERE/data/heldout_prompts.jsonl" 128 3 genai_bundled_all \
        ar verify verify:lookup verify:mask verify@4 threshold:0.9
fi

if [ "$PART" != bundled ]; then
    CKPT=$WORK/qwen05b-24l
    python -c "import sys; sys.path.insert(0, '$HERE'); from pathlib import Path; from decode_loop import make_checkpoint
make_checkpoint(Path('$CKPT'), 24)"
    for precision in fp32 int4; do
        [ -f "$WORK/genai-$precision/genai_config.json" ] || \
            python -m onnxruntime_genai.models.builder -m "$CKPT" -o "$WORK/genai-$precision" -p $precision -e cpu \
                -c "$WORK/hf-cache"
        [ -f "$WORK/eg-$precision/edgegen.json" ] || \
            edgegen export "$CKPT" "$WORK/eg-$precision" --dtype $precision --max-context 4096
        bench "$WORK/eg-$precision" "$WORK/genai-$precision" "$WORK/complete10.jsonl" 64 2 genai_q05_$precision \
            ar verify
    done
fi
