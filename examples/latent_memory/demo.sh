#!/usr/bin/env bash
# Latent-RAG out of the box: index the held-out people of the synthetic knowledge base with the bundled
# compressor, then ask the bundled generator about them. Usage: examples/latent_memory/demo.sh [WORK_DIR]
set -euo pipefail
WORK=${1:-/tmp/edgegen-rag-demo}
python "$(dirname "$0")/make_kb.py" "$WORK/kb" > /dev/null
edgegen rag index "$WORK/store" "$WORK/kb/evidence_heldout.jsonl" --keep-text
QUESTION=$(python -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['question'])" \
    "$WORK/kb/questions_heldout.jsonl")
echo "Q: $QUESTION"
edgegen rag ask "$WORK/store" "$QUESTION" --show-sources
edgegen rag ask "$WORK/store" "$QUESTION" --as-text
