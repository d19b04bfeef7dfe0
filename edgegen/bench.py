"""`edgegen bench`: decoding configurations compared on one model, prompts and threads, in one process.

Configurations are written MODE[:PARAM][@BLOCK], PARAM being threshold mode's τ or verify mode's draft
source: "ar", "verify", "verify:lookup@4", "threshold:0.9", "threshold:0.8@auto". Every repetition runs
every configuration over every prompt, in a shuffled order for each prompt, so that drift of the machine
(heat, other processes) and cold caches after another runtime spread over all of them alike; warm-up
repetitions are not counted.
"""
import json
import random
import resource
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from .runtime.drafting import SOURCES
from .runtime.errors import EdgegenError
from .runtime.options import parse_option
from .status import StatusLine

GENAI_NGRAM = {"ngram_size": 3}  # onnxruntime-genai's draft-free speculation, as its docs configure it

BUILTIN_PROMPTS = [
    "Write 4821 in words.", "Write 90317 in words.", "Write 566 in words.", "Write 70004 in words.",
    "Explain what this Python function does:\n\ndef clamp(x, lo, hi):\n    return max(lo, min(x, hi))",
    "Complete this Python function:\n\ndef mean(values):\n    \"\"\"Return the arithmetic mean.\"\"\"",
    "Remove the docstring from this function:\n\ndef double(x):\n    \"\"\"Twice x.\"\"\"\n    return 2 * x",
    "What is a Python list comprehension?",
]


@dataclass
class Config:
    name: str
    options: dict


@dataclass
class Row:
    """One configuration's measurements, summed over prompts and counted repetitions."""
    name: str
    runs: int = 0
    prompt_tokens: int = 0
    new_tokens: int = 0
    decoded_tokens: int = 0  # new tokens and each end-of-sequence token: what the forwards produced
    forwards: int = 0
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    decode_tokens: int = 0
    ttft_ms: list = field(default_factory=list)
    step_ms: list = field(default_factory=list)
    peak_rss_mb: float = 0.0
    drafts: dict = field(default_factory=dict)  # source -> [proposed, accepted]
    outputs: list = field(default_factory=list)  # token ids per prompt, from the first counted repetition
    same_as_ar: int | None = None  # prompts whose output equals the AR output

    def add_drafts(self, source: str, proposed: int, accepted: int) -> None:
        totals = self.drafts.setdefault(source, [0, 0])
        totals[0] += proposed
        totals[1] += accepted

    def summary(self) -> dict:
        steps = sorted(self.step_ms) or [0.0]
        return {
            "config": self.name, "runs": self.runs, "ttft_ms_p50": statistics.median(self.ttft_ms or [0.0]),
            "prefill_tokens_per_s": self.prompt_tokens / (self.prefill_ms / 1000) if self.prefill_ms else 0.0,
            "decode_tokens_per_s": self.decode_tokens / (self.decode_ms / 1000) if self.decode_ms else 0.0,
            "tokens_per_forward": self.decoded_tokens / self.forwards if self.forwards else 0.0,
            "step_ms_p50": steps[len(steps) // 2], "step_ms_p99": steps[min(len(steps) - 1, int(len(steps) * 0.99))],
            "prompt_tokens_mean": self.prompt_tokens / self.runs if self.runs else 0.0, "new_tokens": self.new_tokens,
            "peak_rss_mb": self.peak_rss_mb,
            "draft_acceptance": {source: accepted / proposed if proposed else 0.0
                                 for source, (proposed, accepted) in self.drafts.items()},
            "drafts_proposed": {source: proposed for source, (proposed, _) in self.drafts.items()},
            "same_as_ar": self.same_as_ar, "prompts": len(self.outputs),
        }


def parse_config(text: str) -> Config:
    spec, _, block = text.partition("@")
    mode, _, param = spec.partition(":")
    if mode not in ("ar", "threshold", "verify") or (param and mode == "ar") or \
            (param and mode == "verify" and param not in SOURCES):
        raise EdgegenError(f"bad configuration {text!r}: write MODE[:PARAM][@BLOCK] with MODE ar, threshold or "
                           f"verify, PARAM threshold's τ or verify's drafts ({', '.join(SOURCES)}), e.g. "
                           "threshold:0.9@auto or verify:lookup@4")
    options = {"mode": mode}
    try:
        if param:
            name = "drafts" if mode == "verify" else "threshold"
            options[name] = parse_option(name, param)
        if block:
            options["block_size"] = parse_option("block_size", block)
    except EdgegenError as e:
        raise EdgegenError(f"bad configuration {text!r}: {str(e).removeprefix('invalid generation option: ')}") from e
    return Config(text, options)


def default_configs(model) -> list[Config]:
    """AR, the default (lossless verify with every draft source), and on MARS models lossy threshold mode."""
    mars = model.manifest.mask_token_id is not None
    return [parse_config(c) for c in ("ar", "verify") + (("threshold:0.9",) if mars else ())]


def read_prompts(path: Path | None) -> list[str]:
    """Plain text (one prompt per line) or JSONL rows with "prompt" or chat "messages"."""
    if path is None:
        return BUILTIN_PROMPTS
    if not path.is_file():
        raise EdgegenError(f"missing prompts file {path}")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix != ".jsonl":
        return lines
    prompts = []
    for number, line in enumerate(lines, 1):
        row = json.loads(line)
        if "prompt" in row:
            prompts.append(row["prompt"])
        elif "messages" in row:
            prompts.append(next(m["content"] for m in row["messages"] if m["role"] == "user"))
        else:
            raise EdgegenError(f'{path}:{number} has neither "prompt" nor "messages"')
    return prompts


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Progress:
    def __init__(self, total: int):
        self.total, self.done, self.began = total, 0, time.perf_counter()
        self.line = StatusLine(total // 10)

    def step(self, label: str) -> None:
        self.done += 1
        eta = (time.perf_counter() - self.began) / self.done * (self.total - self.done)
        self.line.show(f"[{'#' * (20 * self.done // self.total):<20}] {self.done}/{self.total} {label:<24} "
                       f"ETA {eta:4.0f}s", last=self.done == self.total)


def run_edgegen(model, prompt_ids: list[int], options: dict, row: Row) -> list[int]:
    result = model.stream(prompt_ids, **options).run()
    stats = result.stats
    for source, counts in stats.drafts_by_source.items():
        row.add_drafts(source, counts["proposed"], counts["accepted"])
    row.runs += 1
    row.prompt_tokens += stats.prompt_tokens - stats.cached_prompt_tokens
    row.new_tokens += stats.new_tokens
    row.decoded_tokens += stats.decoded_tokens
    row.forwards += stats.forwards
    row.prefill_ms += stats.prefill_ms
    row.ttft_ms.append(stats.ttft_ms)
    row.step_ms += stats.step_ms
    row.decode_ms += sum(stats.step_ms)
    row.decode_tokens += stats.decode_tokens
    row.peak_rss_mb = peak_rss_mb()
    return result.token_ids


class GenaiRunner:
    """onnxruntime-genai's own Generator loop, on a model its builder made from the same checkpoint: plain
    AR, or with its n-gram speculation (`speculative` goes into genai_config.json as its docs show)."""

    def __init__(self, path: Path, threads: int | None, speculative: dict | None = None):
        try:
            import onnxruntime_genai as og
        except ImportError as e:
            raise EdgegenError("--compare onnxruntime-genai needs it installed: pip install onnxruntime-genai") from e
        if not (Path(path) / "genai_config.json").is_file():
            raise EdgegenError(f"{path} is not an onnxruntime-genai model (no genai_config.json); build one with "
                               "python -m onnxruntime_genai.models.builder -m CHECKPOINT -o DIR -p fp32 -e cpu")
        config = og.Config(str(path))
        if threads:
            config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
        if speculative:
            config.overlay(json.dumps({"speculative": speculative}))
        self.og, self.model, self.speculative = og, og.Model(config), speculative
        self.name = "onnxruntime-genai " + ("ngram" if speculative else "ar")

    def run(self, prompt_ids: list[int], max_new_tokens: int, row: Row) -> list[int]:
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=len(prompt_ids) + max_new_tokens, do_sample=False)
        generator = self.og.Generator(self.model, params)
        start = time.perf_counter()
        generator.append_tokens(prompt_ids)
        generator.generate_next_token()
        first = time.perf_counter()
        steps = []
        while not generator.is_done():
            step_start = time.perf_counter()
            generator.generate_next_token()
            steps.append((time.perf_counter() - step_start) * 1000)
        output = [int(t) for t in generator.get_sequence(0)[len(prompt_ids):]]
        new_tokens = len(output)
        row.runs += 1
        row.prompt_tokens += len(prompt_ids)
        row.new_tokens += new_tokens
        row.decoded_tokens += new_tokens  # genai's sequence holds the end-of-sequence token too
        if self.speculative:
            stats = generator.get_speculative_stats()
            row.forwards += stats["target_forward_passes"] + stats["standard_fallback_steps"]
            row.add_drafts("ngram", stats["draft_tokens_evaluated"], stats["draft_tokens_accepted"])
        else:
            row.forwards += new_tokens
        row.prefill_ms += (first - start) * 1000
        row.ttft_ms.append((first - start) * 1000)
        row.step_ms += steps
        row.decode_ms += sum(steps)
        row.decode_tokens += len(steps)
        row.peak_rss_mb = peak_rss_mb()
        return output


def synthetic_prompt(model, tokens: int) -> list[int]:
    """`tokens` arbitrary ids spread over the vocabulary, none special: for speed alone (random-weight models)."""
    special = set(model.manifest.eos_token_ids) | {model.manifest.mask_token_id, model.manifest.pad_token_id}
    ids = [(7919 * i) % model.manifest.vocab_size for i in range(1, 4 * tokens)]
    return [i for i in ids if i not in special][:tokens]


def benchmark(model, prompt_ids: list[list[int]], configs: list[Config], max_new_tokens: int, repeat: int,
              warmup: int, genai: list | None = None) -> list[dict]:
    """Summaries per configuration (and onnxruntime-genai's runners, when given), alternating every prompt
    in a shuffled order."""
    runners = [(c.name, lambda ids, row, c=c: run_edgegen(
        model, ids, {"max_new_tokens": max_new_tokens, **c.options}, row)) for c in configs]
    runners += [(g.name, lambda ids, row, g=g: g.run(ids, max_new_tokens, row)) for g in genai or []]
    rows = {name: Row(name) for name, _ in runners}
    order = random.Random(0)
    progress = Progress((warmup + repeat) * len(prompt_ids))
    for repetition in range(warmup + repeat):
        for ids in prompt_ids:
            order.shuffle(runners)  # whoever runs right after another runtime finds cold caches: spread that cost
            for name, run in runners:
                model.engine.rewind(0)  # no KV reuse between configurations: each pays its own prefill
                row = rows[name] if repetition >= warmup else Row(name)
                output = run(ids, row)
                if repetition == warmup:
                    row.outputs.append(output)
            progress.step("warm-up" if repetition < warmup else f"repetition {repetition - warmup + 1}")
    reference = rows.get("ar") or rows.get("onnxruntime-genai ar")
    for row in rows.values():
        if reference:
            row.same_as_ar = sum(a == b for a, b in zip(row.outputs, reference.outputs))
    return [row.summary() for row in rows.values()]


def best_ratio(summaries: list[dict]) -> tuple[dict, dict, float]:
    """The fastest edgegen configuration, the fastest onnxruntime-genai one, and their decode speed ratio."""
    ours = [s for s in summaries if not s["config"].startswith("onnxruntime-genai")]
    theirs = [s for s in summaries if s["config"].startswith("onnxruntime-genai")]
    best, rival = (max(group, key=lambda s: s["decode_tokens_per_s"]) for group in (ours, theirs))
    return best, rival, best["decode_tokens_per_s"] / rival["decode_tokens_per_s"]


COLUMNS = [  # header, summary key, format
    ("config", "config", "{}"), ("TTFT p50 ms", "ttft_ms_p50", "{:.1f}"),
    ("prefill tok/s", "prefill_tokens_per_s", "{:.0f}"), ("decode tok/s", "decode_tokens_per_s", "{:.0f}"),
    ("tok/forward", "tokens_per_forward", "{:.2f}"), ("draft acceptance", "drafts", "{}"),
    ("step p50 ms", "step_ms_p50", "{:.2f}"), ("step p99 ms", "step_ms_p99", "{:.2f}"),
    ("peak RSS MB", "peak_rss_mb", "{:.0f}"), ("same as AR", "same", "{}"),
]


def print_table(summaries: list[dict]) -> None:
    """A Markdown table whose columns line up in a terminal too; numbers rounded to what is meaningful."""
    rows = [[header for header, _, _ in COLUMNS]]
    for s in summaries:
        s = {**s, "drafts": " ".join(f"{k} {v:.2f}" for k, v in s["draft_acceptance"].items()) or "-",
             "same": "-" if s["same_as_ar"] is None else f"{s['same_as_ar']}/{s['prompts']}"}
        rows.append([form.format(s[key]) for _, key, form in COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["| " + " | ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                               for i, (cell, width) in enumerate(zip(row, widths))) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (width + 1) + (":" if i else "-") for i, width in enumerate(widths)) + "|")
    print("\n".join(lines))


def plot(summaries: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise EdgegenError("--plot needs matplotlib: pip install -e '.[bench]'") from e
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    names = [s["config"] for s in summaries]
    axes[0].barh(names, [s["decode_tokens_per_s"] for s in summaries])
    axes[0].set_xlabel("decode tokens/s")
    axes[1].barh(names, [s["tokens_per_forward"] for s in summaries])
    axes[1].set_xlabel("tokens per forward")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def as_json(model_path, summaries: list[dict], settings: dict) -> str:
    return json.dumps({"model": str(model_path), "settings": settings, "results": summaries}, indent=2)

