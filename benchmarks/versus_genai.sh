#!/usr/bin/env bash
# edgegen against onnxruntime-genai on the same Qwen2.5-0.5B-shaped checkpoint (random weights), same machine,
# same 128-token prompt, 64 new tokens, 2 threads, in one process, alternating run by run (`edgegen bench`).
# Then the bundled MARS model against onnxruntime-genai's AR on the same weights, over the 80 held-out prompts
# (needs its Hugging Face checkpoint: DEFAULT_CKPT, as examples/default_model/build.sh writes it).
# Needs the export and bench extras (onnxruntime-genai is in bench). Results: benchmarks/results/genai_*.json
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

if [ -n "${DEFAULT_CKPT:-}" ]; then  # genai's builder reads model_type qwen2, not the MARS release's a2d-qwen2
    mkdir -p "$WORK/default-qwen2" && cp "$DEFAULT_CKPT"/* "$WORK/default-qwen2/"
    sed -i 's/"a2d-qwen2"/"qwen2"/; s/"A2DQwen2LMHeadModel"/"Qwen2ForCausalLM"/' "$WORK/default-qwen2/config.json"
    [ -f "$WORK/genai-default/genai_config.json" ] || python -m onnxruntime_genai.models.builder \
        -m "$WORK/default-qwen2" -o "$WORK/genai-default" -p fp32 -e cpu -c "$WORK/hf-cache"
    for task in all numbers; do
        prompts=$HERE/data/heldout_prompts.jsonl
        [ $task = numbers ] && prompts=$WORK/numbers.jsonl && grep '"task": "numbers"' "$HERE/data/heldout_prompts.jsonl" > "$prompts"
        edgegen bench --prompts "$prompts" --configs ar threshold:0.9 verify verify@auto --max-new-tokens 96 \
            --repeat 3 --warmup 1 --threads 2 --provider cpu --compare onnxruntime-genai \
            --genai-model "$WORK/genai-default" --json > "$RESULTS/genai_bundled_$task.json"
    done
fi
