#!/usr/bin/env bash
# Builds the bundled latent-RAG pair, edgegen/models/rag/{generator,compressor}, on a CPU:
#   1. a synthetic knowledge base (make_kb.py);
#   2. `train reader`: the bundled default model fine-tuned to answer from retrieved raw text (the teacher);
#   3. `train memory`: a compressor cut from the reader's first 2 layers, trained with the reference's three
#      objectives against the frozen reader;
#   4. both exported (the generator with --latent-inputs), then evaluated on held-out people.
# Usage: examples/latent_memory/build.sh DEFAULT_MODEL_CHECKPOINT [WORK_DIR]
# DEFAULT_MODEL_CHECKPOINT is the Hugging Face directory examples/default_model/build.sh writes (WORK/mars).
set -euo pipefail
BASE=${1:?usage: build.sh DEFAULT_MODEL_CHECKPOINT [WORK_DIR]}
WORK=${2:-/tmp/edgegen-rag}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
KB=(--evidence "$WORK/kb/evidence.jsonl" --questions "$WORK/kb/questions_train.jsonl" --batch-size 16)

python "$HERE/make_kb.py" "$WORK/kb"
edgegen train reader "$BASE" "$WORK/reader-1" "${KB[@]}" --steps 520 --lr 5e-4
edgegen train reader "$WORK/reader-1" "$WORK/reader" "${KB[@]}" --steps 1200 --lr 5e-4 --warmup 0.01 --seed 1
edgegen train memory "$WORK/reader" "$WORK/memory" --generator "$WORK/reader" "${KB[@]}" \
    --base-layers 2 --distill-tokens 6 --steps "${MEMORY_STEPS:-800}" --lr 1e-3
edgegen export "$WORK/reader" "$ROOT/edgegen/models/rag/generator" --latent-inputs --max-context 512 --force
edgegen export-memory "$WORK/memory" "$ROOT/edgegen/models/rag/compressor" --force
python "$ROOT/benchmarks/latent_rag.py" --kb "$WORK/kb"
