#!/usr/bin/env bash
# Latent-RAG out of the box: index the held-out people of the synthetic knowledge base (people the pair never
# trained on) with the bundled compressor, then ask the bundled generator the first N held-out questions over the
# top K retrieved facts' latents and, as the baseline, over the same facts as raw text. The questions are a fixed
# sample, not picked for their answers: each answer is printed beside the expected one and marked right or wrong,
# and the exact match measured on all 1000 held-out questions (benchmarks/latent_rag.py) is printed after them.
# K is 1 by default: the pair was trained on one fact per prompt and reads far better from one than from five.
# Usage: examples/latent_memory/demo.sh [WORK_DIR] [N] [K]   (default: /tmp/edgegen-rag-demo, 10 questions, K = 1)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${1:-/tmp/edgegen-rag-demo}
N=${2:-10}
K=${3:-1}
RESULTS="$HERE/../../benchmarks/results"
python "$HERE/make_kb.py" "$WORK/kb" > /dev/null
edgegen rag index "$WORK/store" "$WORK/kb/evidence_heldout.jsonl" --keep-text

field() { python -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

FIRST=$(field "$(head -n 1 "$WORK/kb/questions_heldout.jsonl")" question)
echo
echo "Q: $FIRST  (the generator's answer over the latents of the $K item(s) hybrid retrieval found, and those items)"
edgegen rag ask "$WORK/store" "$FIRST" --k "$K" --show-sources

echo
echo "The first $N held-out questions (not chosen), expected answer beside the generator's over $K latent(s) and" \
     "over the same $K raw text(s):"
rm -f "$WORK/marks"
head -n "$N" "$WORK/kb/questions_heldout.jsonl" | while IFS= read -r row; do
    question=$(field "$row" question)
    edgegen rag ask "$WORK/store" "$question" --k "$K" --json > "$WORK/latent.json"
    edgegen rag ask "$WORK/store" "$question" --k "$K" --as-text --json > "$WORK/text.json"
    python - "$row" "$WORK/latent.json" "$WORK/text.json" "$WORK/marks" <<'PY'
import json
import sys


def normalize(text):  # as benchmarks/latent_rag.py compares answers
    return " ".join(text.lower().strip(" .\n").split())


row = json.loads(sys.argv[1])
answers = [json.load(open(path))["answer"] for path in sys.argv[2:4]]
right = [normalize(answer) == normalize(row["answer"]) for answer in answers]
marks = ["right" if ok else "wrong" for ok in right]
print(f"  {row['question']:<42} expected {row['answer']:<11} latents: {answers[0]:<11} {marks[0]:<6} "
      f"raw text: {answers[1]:<11} {marks[1]}")
with open(sys.argv[4], "a") as f:
    f.write(f"{int(right[0])} {int(right[1])}\n")
PY
done

python - "$WORK/marks" "$RESULTS" "$K" <<'PY'
import json
import sys
from pathlib import Path

marks = [line.split() for line in open(sys.argv[1])]
print(f"\nOf these {len(marks)}: {sum(m[0] == '1' for m in marks)} right over latents, "
      f"{sum(m[1] == '1' for m in marks)} over raw text.")
print("Exact match measured by benchmarks/latent_rag.py on all held-out questions (hybrid retrieval; its store also "
      "holds other people's facts as hard negatives):")
shown = 0
for k, name in ((1, "latent_rag_k1.json"), (5, "latent_rag.json")):
    path = Path(sys.argv[2]) / name
    people = json.loads(path.read_text()).get("sets", {}).get("people (make_kb.py)") if path.is_file() else None
    if people is None or people.get("answers") is None:
        continue
    shown += 1
    em = {row["context"].replace(f"{k} ", "", 1): row["exact_match"] for row in people["answers"]}
    print(f"  k = {k}{' (this demo)' if str(k) == sys.argv[3] else ''}: over latents {em['latents']:.1%}, over raw "
          f"text {em['raw texts']:.1%}, no context {em['no context']:.1%} ({people['questions']} questions, right fact "
          f"retrieved first for {people['recall_at_1']:.1%})")
    if k == 5:
        print(f"  given the right fact alone: as its latent {em['the right fact alone, as latent']:.1%}, as text "
              f"{em['the right fact alone, as text']:.1%}")
if not shown:
    print("  (no results found: run python benchmarks/latent_rag.py --kb KB [--k 1])")
PY
