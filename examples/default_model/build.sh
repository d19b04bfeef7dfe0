#!/usr/bin/env bash
# Rebuild edgegen's bundled default model from Python's standard library and synthetic number-words
# pairs (about 50 minutes on 2 CPU cores; see MODEL_CARD.md).
#   bash examples/default_model/build.sh WORK_DIR
set -euo pipefail
work=${1:-/tmp/edgegen-default-model}
here=$(dirname "$0")
mkdir -p "$work"
python "$here/make_data.py" "$work/data"
cat "$work/data/numbers.jsonl" <(head -n 4000 "$work/data/train.jsonl") > "$work/data/mix.jsonl"
edgegen train tokenizer "$work/tokenizer" "$work/data/corpus.jsonl" --vocab-size 4096
edgegen train init "$work/tokenizer" "$work/init" --hidden-size 256 --layers 6 --heads 4 --kv-heads 2 \
    --intermediate-size 768 --max-position-embeddings 1024
# 1. pre-training on the sources; 2. chat SFT on the code tasks, then on number words (the MARS
# recipe's AR stage); 3. MARS fine-tuning with block size 4 on number words plus code tasks
edgegen train ar "$work/init" "$work/data/corpus.jsonl" "$work/pretrained" --steps 520 --lr 2e-3 --max-length 384
edgegen train ar "$work/pretrained" "$work/data/train.jsonl" "$work/sft" --epochs 1 --lr 1e-3 --max-length 384
edgegen train ar "$work/sft" "$work/data/numbers.jsonl" "$work/sft-numbers" --steps 1500 --batch-size 16 \
    --lr 1e-3 --max-length 384
edgegen train mars "$work/sft-numbers" "$work/data/mix.jsonl" "$work/mars" --epochs 1 --batch-size 16 --lr 5e-4 \
    --max-length 384 --block-size 4
edgegen export "$work/mars" "$work/export" --max-context 1024 --force
