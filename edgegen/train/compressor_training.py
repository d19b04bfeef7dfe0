"""`edgegen train memory`: a latent-memory compressor for a frozen generator (arXiv 2606.10572).

The compressor is a frozen base LM with three LoRA adapters (compress: evidence, query: questions,
decode: reconstruction, used in training only), a learned [MEM] vector appended after the text,
and two heads on the final-norm hidden state h at [MEM]: retrieval_proj and cross_proj. The loss
is the reference's 0.5 * reconstruction + 0.2 * InfoNCE + 1.0 * distillation, where the teacher is
the generator reading "Context i: <text>" and the student the same generator reading
"Latent context i: <latent>" (plus 0-3 hard-negative latents), both laid out by `build_prompt`.
With tune_generator (small generators) the distillation is replaced by the gold-answer losses of
`gold_answer_losses`, and the generator trains too.
"""
import json
import math
import random
import shutil
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from ..export.checkpoint import Weights
from ..runtime.compressor import REFERENCE_LAYOUT
from ..runtime.rag import build_prompt
from ..runtime.tokenizer import Tokenizer
from .knowledge import Question, answer_ids, shown_evidence

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
DECODE = ATTENTION + ("gate_proj", "up_proj")  # the reference's decode adapter also adapts the MLP
WEIGHTS = {"recon": 0.5, "contrast": 0.2, "distill": 1.0}


class AdapterSwitch:
    active: str | None = None


class LoRALinear(nn.Module):
    """A frozen Linear plus one low-rank path per adapter; the switch picks which one runs."""

    def __init__(self, base: nn.Linear, adapters: list[str], rank: int, scale: float, dropout: float,
                 switch: AdapterSwitch):
        super().__init__()
        self.base, self.scale, self.switch = base, scale, switch
        self.dropout = nn.Dropout(dropout)
        self.lora_A = nn.ParameterDict({a: nn.Parameter(torch.empty(rank, base.in_features)) for a in adapters})
        self.lora_B = nn.ParameterDict({a: nn.Parameter(torch.zeros(base.out_features, rank)) for a in adapters})
        for a in adapters:
            nn.init.kaiming_uniform_(self.lora_A[a], a=math.sqrt(5))  # as PEFT: B = 0, so training starts at W

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, adapter = self.base(x), self.switch.active
        if adapter not in self.lora_A:
            return out
        return out + self.scale * (self.dropout(x) @ self.lora_A[adapter].T @ self.lora_B[adapter].T)


class CrossProjection(nn.Module):
    """h -> the generator's input-embedding space: Linear -> exact GELU -> Linear -> LayerNorm."""

    def __init__(self, hidden: int, generator_hidden: int, embedding_rms: float = 1.0):
        super().__init__()
        mid = (hidden + generator_hidden) // 2
        self.net = nn.Sequential(nn.Linear(hidden, mid), nn.GELU(), nn.Linear(mid, generator_hidden),
                                 nn.LayerNorm(generator_hidden))
        nn.init.constant_(self.net[-1].weight, embedding_rms)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def add_adapters(lm: nn.Module, targets: dict[str, tuple[str, ...]], rank: int, alpha: float, dropout: float,
                 switch: AdapterSwitch) -> None:
    """Wrap every targeted Linear of every decoder layer; `targets` maps adapter -> module names."""
    for name, module in list(lm.named_modules()):
        for child_name, child in list(module.named_children()):
            adapters = [a for a, names in targets.items() if child_name in names]
            if adapters and isinstance(child, nn.Linear) and ".layers." in f"{name}.":
                setattr(module, child_name, LoRALinear(child, adapters, rank, alpha / rank, dropout, switch))


class MemoryModel(nn.Module):
    def __init__(self, compressor_lm: nn.Module, generator: nn.Module, retrieval_dim: int, rank: int, alpha: float,
                 dropout: float = 0.05, tune_generator: bool = False):
        super().__init__()
        frozen = list(compressor_lm.parameters()) + ([] if tune_generator else list(generator.parameters()))
        for p in frozen:
            p.requires_grad_(False)
        self.tune_generator = tune_generator
        self.switch = AdapterSwitch()
        add_adapters(compressor_lm, {"compress": ATTENTION, "query": ATTENTION, "decode": DECODE}, rank, alpha,
                     dropout, self.switch)
        hidden = compressor_lm.config.hidden_size
        self.lm, self.generator = compressor_lm, generator
        self.mem_embedding = nn.Parameter(torch.randn(1, hidden) * 0.02)
        self.retrieval_proj = nn.Sequential(nn.Linear(hidden, retrieval_dim), nn.LayerNorm(retrieval_dim))
        table = generator.get_input_embeddings().weight
        self.cross_proj = CrossProjection(hidden, generator.config.hidden_size, table.pow(2).mean().sqrt().item())
        self.lora_scale = alpha / rank

    def encode(self, texts: list[list[int]], adapter: str) -> torch.Tensor:
        """h [N, H]: each text with [MEM] right after it, at position len(text) as on the device
        (left padding with explicit positions, so batching does not move [MEM])."""
        self.switch.active = adapter
        embeds = [torch.cat([self.lm.model.embed_tokens(torch.tensor(ids)), self.mem_embedding]) for ids in texts]
        h = last_hidden(self.lm.model, embeds)
        self.switch.active = None
        return h

    def retrieval(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.retrieval_proj(h), dim=-1)


def left_padded(embeds: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of different lengths -> [B, L, H] right-aligned, the attention mask, and positions 0.. per row."""
    length = max(e.shape[0] for e in embeds)
    batch = torch.zeros(len(embeds), length, embeds[0].shape[-1], dtype=embeds[0].dtype)
    mask = torch.zeros(len(embeds), length, dtype=torch.long)
    for row, e in enumerate(embeds):
        batch[row, length - e.shape[0]:], mask[row, length - e.shape[0]:] = e, 1
    return batch, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def last_hidden(backbone: nn.Module, embeds: list[torch.Tensor]) -> torch.Tensor:
    batch, mask, positions = left_padded(embeds)
    return backbone(inputs_embeds=batch, attention_mask=mask, position_ids=positions).last_hidden_state[:, -1]


def logits_of(lm: nn.Module, embeds: list[torch.Tensor]) -> torch.Tensor:
    """[B, L, V], right-aligned: the last columns of every row are its last positions."""
    batch, mask, positions = left_padded(embeds)
    return lm(inputs_embeds=batch, attention_mask=mask, position_ids=positions).logits


def answer_loss(lm: nn.Module, prompts: list[torch.Tensor], answers: list[list[int]]) -> torch.Tensor:
    """Cross-entropy of each answer, teacher-forced after its prompt (prompts as input embeddings)."""
    table = lm.get_input_embeddings()
    logits = logits_of(lm, [torch.cat([p, table(torch.tensor(a[:-1]))]) for p, a in zip(prompts, answers)])
    labels = torch.full(logits.shape[:2], -100, dtype=torch.long)
    for row, a in enumerate(answers):  # right-aligned: the last len(a) outputs predict the answer
        labels[row, logits.shape[1] - len(a):] = torch.tensor(a)
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)


def reconstruction_loss(model: MemoryModel, h: torch.Tensor, texts: list[list[int]], eos: int) -> torch.Tensor:
    """The decode adapter reads [h | x_1..x_{n-1}] and predicts x_1..x_n: the latent must hold the text."""
    model.switch.active = "decode"
    loss = answer_loss(model.lm, [row[None] for row in h], [ids + [eos] for ids in texts])
    model.switch.active = None
    return loss


def contrastive_loss(queries: torch.Tensor, keys: torch.Tensor, positives: list[list[int]],
                     temperature: float = 0.07) -> torch.Tensor:
    """Multi-positive InfoNCE: every key in the batch (positives of all questions, all hard negatives)
    competes with each question's positives."""
    logits = queries @ keys.T / temperature
    log_probs = logits - logits.logsumexp(dim=-1, keepdim=True)
    return torch.stack([-log_probs[i, rows].mean() for i, rows in enumerate(positives)]).mean()


def prompt_embeds(generator: nn.Module, tokenizer: Tokenizer, question: str, contexts: list,
                  layout: dict = REFERENCE_LAYOUT) -> torch.Tensor:
    """The rag prompt as input embeddings: token rows from the generator's table, latent rows spliced in."""
    items, _ = build_prompt(tokenizer, layout, question, contexts)
    table = generator.get_input_embeddings()
    rows, ids = [], []
    for item in items + [None]:
        if isinstance(item, int):
            ids.append(item)
            continue
        if ids:
            rows.append(table(torch.tensor(ids)))
            ids = []
        if item is not None:
            rows.append(item[None])
    return torch.cat(rows)


@torch.no_grad()
def teacher_tokens(generator: nn.Module, prompts: list[torch.Tensor], steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy answers of the generator reading raw text, and its distributions over those steps [B, steps, V]."""
    table = generator.get_input_embeddings()
    tokens = torch.zeros(len(prompts), 0, dtype=torch.long)
    for _ in range(steps):
        logits = logits_of(generator, [torch.cat([p, table(t)]) for p, t in zip(prompts, tokens)])
        tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens, logits[:, -steps:].softmax(-1)


def distillation_loss(model: MemoryModel, tokenizer: Tokenizer, questions: list[Question], latents: dict,
                      shown: list[list[str]], eos: int, steps: int, layout: dict = REFERENCE_LAYOUT) -> torch.Tensor:
    """Forward KL(teacher || student) over the teacher's greedy answer, teacher-forced in both."""
    table = model.generator.get_input_embeddings()
    teacher = [prompt_embeds(model.generator, tokenizer, q.question, q.positives, layout) for q in questions]
    tokens, teacher_probs = teacher_tokens(model.generator, teacher, steps)
    student = []
    for q, texts, answer in zip(questions, shown, tokens):
        prompt = prompt_embeds(model.generator, tokenizer, q.question, [latents[t] for t in texts], layout)
        student.append(torch.cat([prompt, table(answer[:-1])]))
    student_logp = logits_of(model.generator, student)[:, -steps:].log_softmax(-1)
    after_eos = (tokens == eos).long().cumsum(-1) - (tokens == eos).long()  # positions past the first eos
    kl = F.kl_div(student_logp, teacher_probs, reduction="none").sum(-1)
    return (kl * (after_eos == 0)).sum() / (after_eos == 0).sum()


def memory_loss(model: MemoryModel, questions: list[Question], tokenizer: Tokenizer, generator_tokenizer: Tokenizer,
                max_tokens: int, distill_steps: int, seed: int, contexts: int = 4) -> dict:
    """The three objectives on one batch of questions; the generator sees its right evidence plus hard
    negatives, `contexts` items at most."""
    rng = random.Random(seed + zlib.crc32("\n".join(q.question for q in questions).encode()))  # same on resume
    shown = [shown_evidence(q, contexts, rng) for q in questions]
    keys = list(dict.fromkeys(t for q in questions for t in q.positives + q.negatives))
    key_ids = [tokenizer.encode(t, add_special_tokens=True)[:max_tokens] for t in keys]
    h = model.encode(key_ids, "compress")
    query_h = model.encode([tokenizer.encode(q.question, add_special_tokens=True)[:max_tokens] for q in questions],
                           "query")
    row = {text: i for i, text in enumerate(keys)}
    contrast = contrastive_loss(model.retrieval(query_h), model.retrieval(h),
                                [[row[t] for t in q.positives] for q in questions])
    recon = reconstruction_loss(model, h, key_ids, special_eos(tokenizer))
    projected = model.cross_proj(h)
    latents = {text: projected[i] for i, text in enumerate(keys)}
    losses = {"recon": recon, "contrast": contrast}
    if model.tune_generator:
        heads_only = model.cross_proj(h.detach())  # align trains cross_proj alone: h also feeds retrieval
        losses.update(gold_answer_losses(model, generator_tokenizer, questions, shown, latents,
                                         {text: heads_only[i] for i, text in enumerate(keys)}))
    else:
        losses["distill"] = distillation_loss(model, generator_tokenizer, questions, latents, shown,
                                              special_eos(generator_tokenizer), distill_steps)
    total = sum(WEIGHTS.get(name, 1.0) * value for name, value in losses.items())
    return {"loss": total, **losses}


def gold_answer_losses(model: MemoryModel, tokenizer: Tokenizer, questions: list[Question], shown: list[list[str]],
                       latents: dict, align_latents: dict) -> dict:
    """With no teacher to distil from (--tune-generator), the generator learns each gold answer
    - from the shown evidence as latents (latent_answer) and as raw text (text_answer);
    - from a slot holding the mean input embedding of the answer's own tokens (slot_answer): this
      teaches reading a single spliced vector, which a small model does not pick up from latents alone;
    and each right evidence's latent is pulled toward its answer's slot (align, 1 - cosine), so
    cross_proj writes what the generator has learned to read. `align_latents` are the latents with h
    detached: pulling h itself toward answers cost most of the retrieval (recall@1 0.29 -> 0.06)."""
    answers = [answer_ids(tokenizer, " " + q.answer) for q in questions]
    table = model.generator.get_input_embeddings()
    slots = [table(torch.tensor(a[:-1] or a)).mean(0) for a in answers]  # a[-1] is the end-of-turn token
    contexts = {"latent_answer": [[latents[t] for t in texts] for texts in shown], "text_answer": shown,
                "slot_answer": [[slot] for slot in slots]}
    losses = {}
    for name, evidence in contexts.items():
        prompts = [prompt_embeds(model.generator, tokenizer, q.question, e) for q, e in zip(questions, evidence)]
        losses[name] = answer_loss(model.generator, prompts, answers)
    pairs = [(align_latents[t], slot.detach()) for q, slot in zip(questions, slots) for t in q.positives]
    aligned, targets = (torch.stack(column) for column in zip(*pairs))
    losses["align"] = (1 - F.cosine_similarity(aligned, targets, dim=-1)).mean()
    return losses


def special_eos(tokenizer: Tokenizer) -> int:
    return tokenizer.fast.token_to_id(tokenizer.special_tokens["eos_token"])


def truncate_layers(lm: nn.Module, layers: int | None) -> None:
    """Keep the first `layers` decoder layers: a smaller compressor cut from a larger base."""
    if not layers or layers >= lm.config.num_hidden_layers:
        return
    lm.model.layers = lm.model.layers[:layers]
    lm.config.num_hidden_layers = layers
    if getattr(lm.config, "layer_types", None):
        lm.config.layer_types = lm.config.layer_types[:layers]


def save_memory(model: MemoryModel, base: Path, generator_dir: Path, out: Path, max_tokens: int, log: list,
                tokenizer_files: tuple[str, ...]) -> None:
    """The project's layout: base/ (the frozen compressor LM), memory.safetensors with PEFT-style LoRA keys,
    memory_config.json, train_log.jsonl; `edgegen export-memory OUT` reads it."""
    out.mkdir(parents=True, exist_ok=True)
    state = {"mem_embedding": model.mem_embedding}
    state.update({f"retrieval_proj.{k}": v for k, v in model.retrieval_proj.state_dict().items()})
    state.update({f"cross_proj.{k}": v for k, v in model.cross_proj.state_dict().items()})
    for name, module in model.lm.named_modules():
        if isinstance(module, LoRALinear):
            for adapter in module.lora_A:
                for part, weights in (("lora_A", module.lora_A), ("lora_B", module.lora_B)):
                    state[f"lora_{adapter}.base_model.model.{name}.{part}.{adapter}.weight"] = weights[adapter]
    save_file({k: v.detach().contiguous() for k, v in state.items()}, out / "memory.safetensors")
    base_state = {k.replace(".base.", "."): v for k, v in model.lm.state_dict().items() if ".lora_" not in k}
    model.lm.save_pretrained(out / "base", state_dict=base_state)  # the plain frozen weights
    for name in tokenizer_files:
        if (base / name).is_file():
            shutil.copy2(base / name, out / "base" / name)
    if model.tune_generator:  # the generator changed: it ships beside the compressor
        model.generator.save_pretrained(out / "generator")
        for name in tokenizer_files:
            if (generator_dir / name).is_file():
                shutil.copy2(generator_dir / name, out / "generator" / name)
        generator_dir = out / "generator"
    config = {"lora_scale": model.lora_scale, "max_evidence_tokens": max_tokens,
              "generator": {"path": str(generator_dir), "hidden_size": model.generator.config.hidden_size,
                            "weights_sha256": Weights(generator_dir).sha256(), "tuned": model.tune_generator}}
    (out / "memory_config.json").write_text(json.dumps(config, indent=2) + "\n")
    with (out / "train_log.jsonl").open("w") as f:
        f.writelines(json.dumps(row) + "\n" for row in log)
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
