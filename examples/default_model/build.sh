#!/usr/bin/env bash
# Rebuild edgegen's bundled default model from Python's standard library (about 45 minutes on 2 CPU cores).
#   bash examples/default_model/build.sh WORK_DIR
set -euo pipefail
work=${1:-/tmp/edgegen-default-model}
here=$(dirname "$0")
mkdir -p "$work"
python "$here/make_data.py" "$work/data"
edgegen train tokenizer "$work/tokenizer" "$work/data/corpus.jsonl" --vocab-size 4096
edgegen train init "$work/tokenizer" "$work/init" --hidden-size 256 --layers 6 --heads 4 --kv-heads 2 \
    --intermediate-size 768 --max-position-embeddings 1024
# 1. pre-training on the sources, 2. chat SFT, 3. MARS fine-tuning (block size 4), as in the MARS recipe
edgegen train ar "$work/init" "$work/data/corpus.jsonl" "$work/pretrained" --steps 520 --lr 2e-3 --max-length 384
edgegen train ar "$work/pretrained" "$work/data/train.jsonl" "$work/sft" --epochs 1 --lr 1e-3 --max-length 384
edgegen train mars "$work/sft" "$work/data/train.jsonl" "$work/mars" --epochs 1 --lr 5e-4 --max-length 384 \
    --block-size 4
edgegen export "$work/mars" "$work/export" --dtype fp16 --max-context 1024 --force
