#!/usr/bin/env bash
# Builds the bundled latent-RAG pair, edgegen/models/rag/{generator,compressor}, on a CPU:
#   1. a synthetic knowledge base (make_kb.py);
#   2. `train reader`: the bundled default model fine-tuned to answer from retrieved raw text, first over 1-5
#      facts, then over the one right fact (where a 5.8M model first learns to extract at all);
#   3. `train memory --tune-generator --contexts 1`: a compressor cut from the reader's first 2 layers
#      (reconstruction and InfoNCE as the reference), trained together with the reader on gold answers from the
#      right fact's latent, its text and its answer slot, latents aligned to the slot (this 5.8M generator, frozen,
#      could not be taught by distillation; see MODEL_CARD.md);
#   4. both exported (the generator with --latent-inputs), then evaluated on held-out people.
# Usage: examples/latent_memory/build.sh DEFAULT_MODEL_CHECKPOINT [WORK_DIR]
# DEFAULT_MODEL_CHECKPOINT is the Hugging Face directory examples/default_model/build.sh writes (WORK/mars), or the
# bundled default model written back out by `python examples/default_model/from_onnx.py DIR`.
set -euo pipefail
BASE=${1:?usage: build.sh DEFAULT_MODEL_CHECKPOINT [WORK_DIR]}
WORK=${2:-/tmp/edgegen-rag}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
KB=(--evidence "$WORK/kb/evidence.jsonl" --questions "$WORK/kb/questions_train.jsonl")

python "$HERE/make_kb.py" "$WORK/kb"
edgegen train reader "$BASE" "$WORK/reader-1" "${KB[@]}" --batch-size 16 --steps 520 --lr 5e-4
edgegen train reader "$WORK/reader-1" "$WORK/reader" "${KB[@]}" --contexts 1 --batch-size 16 --steps 800 --lr 1e-3 \
    --warmup 0.02 --seed 2
edgegen train memory "$WORK/reader" "$WORK/memory" --generator "$WORK/reader" "${KB[@]}" --batch-size 8 \
    --base-layers 2 --steps 1200 --lr 1e-3 --tune-generator --contexts 1
edgegen export "$WORK/memory/generator" "$ROOT/edgegen/models/rag/generator" --latent-inputs --max-context 512 --force
edgegen export-memory "$WORK/memory" "$ROOT/edgegen/models/rag/compressor" --force
python "$ROOT/benchmarks/latent_rag.py" --kb "$WORK/kb"
