#!/usr/bin/env bash
# The GPU check, one command on a machine with onnxruntime-gpu: the GPU tests, then `edgegen doctor` on the
# bundled model (fp32; fp16 with GQA and with standard attention, against the fp32 tokens) and on a
# Qwen2.5-0.5B-shaped random-weight fp16 export (both attentions, and GQA with top-k outputs: their tokens and
# speed against whole logit rows), then `edgegen build-engine` where TensorRT is there. Reports land in OUT
# (default ./gpu-check).
#
#   bash benchmarks/gpu_check.sh CHECKPOINT [OUT]
#
# CHECKPOINT is the bundled model's Hugging Face checkpoint (python benchmarks/checkpoint_from_onnx.py
# edgegen/models/default DIR makes one); the 0.5B-shaped one is built here with transformers.
set -uo pipefail
ckpt=${1:?usage: gpu_check.sh CHECKPOINT [OUT]}
out=${2:-gpu-check}
work=$(mktemp -d)
mkdir -p "$out"
python -m pytest -q -m gpu tests/test_gpu.py -rs 2>&1 | tee "$out/pytest-gpu.log"
edgegen doctor --json > "$out/environment.json"
edgegen doctor | tee "$out/environment.txt"
for attention in gqa standard; do
  edgegen export "$ckpt" "$work/bundled-fp16-$attention" --dtype fp16 --attention "$attention" --no-verify
  edgegen export "$ckpt" "$work/bundled-fp32-$attention" --attention "$attention" --no-verify
done
python benchmarks/random_checkpoint.py "$ckpt" "$work/q05-ckpt"
for attention in gqa standard; do
  edgegen export "$work/q05-ckpt" "$work/q05-fp16-$attention" --dtype fp16 --attention "$attention" \
    --max-context 2048 --no-verify
done
edgegen export "$work/q05-ckpt" "$work/q05-fp16-topk" --dtype fp16 --topk 64 --max-context 2048 --no-verify
status=0
check() {  # name, model, extra doctor arguments
  local name=$1; shift
  edgegen doctor "$@" --provider cuda --json > "$out/doctor-$name.json" || status=1
  [ -s "$out/doctor-$name.json" ] || return
  python - "$out/doctor-$name.json" <<'PY'
import json, sys
from edgegen.doctor import print_conformance
print_conformance(json.load(open(sys.argv[1]))["conformance"])
PY
}
check bundled-fp32-gqa edgegen/models/default
check bundled-fp32-standard "$work/bundled-fp32-standard"
check bundled-fp16-gqa "$work/bundled-fp16-gqa" --reference edgegen/models/default
check bundled-fp16-standard "$work/bundled-fp16-standard" --reference edgegen/models/default
# random weights spread 151936 logits thinly: GPU and CPU fp16 kernels part at near-ties, reported with their gap
check q05-fp16-gqa "$work/q05-fp16-gqa" --tie-gap 0.01
check q05-fp16-standard "$work/q05-fp16-standard" --tie-gap 0.01
python benchmarks/topk_outputs.py --model "$work/q05-fp16-topk" --plain "$work/q05-fp16-gqa" --provider cuda \
  --out "$out/topk-outputs.json" | tee "$out/topk-outputs.txt" || status=1
{ time edgegen build-engine "$work/bundled-fp16-standard" ; } 2>&1 | tail -8 | tee "$out/tensorrt.txt"
{ time edgegen generate "$work/bundled-fp16-standard" --provider tensorrt --prompt "def add(a, b):" \
    --max-new-tokens 8 ; } 2>&1 | tail -8 | tee -a "$out/tensorrt.txt"
rm -rf "$work"
exit $status
