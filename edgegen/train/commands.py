"""What `edgegen train tokenizer|init|ar|mars` do."""
import json
import math
import shutil
import sys
from functools import partial
from pathlib import Path

import torch

from ..runtime.errors import EdgegenError
from ..runtime.tokenizer import Tokenizer
from .compressor_training import MemoryModel, memory_loss, save_memory, truncate_layers
from .data import read_examples
from .knowledge import read_questions, reader_examples
from .objectives import ar_loss, mars_loss
from .tokenizer import MASK_TOKEN, train_tokenizer
from .trainer import TOKENIZER_FILES, TrainConfig, finish, train


def text_of(path: Path):
    """Training text from plain files, or from the message contents of chat JSONL."""
    if path.suffix != ".jsonl":
        yield path.read_text(encoding="utf-8", errors="ignore")
        return
    for line in path.open(encoding="utf-8"):
        row = json.loads(line) if line.strip() else {}
        yield row.get("text") or "\n".join(m["content"] for m in row.get("messages", []))


def tokenizer_command(args) -> None:
    files, out, vocab_size = args.files, args.out, args.vocab_size
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise EdgegenError(f"missing file {missing[0]}")
    size = train_tokenizer((text for f in files for text in text_of(f)), out, vocab_size)
    print(f"tokenizer with {size} tokens written to {out}", file=sys.stderr)


def init_command(args) -> None:
    """A randomly initialized qwen2/llama model sized for the tokenizer (rows rounded up to 64, spare ones free)."""
    tokenizer_dir, out, arch = args.tokenizer, args.out, args.arch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tokenizer = Tokenizer(tokenizer_dir)
    vocab = tokenizer.fast.get_vocab_size()
    special = {k: tokenizer.fast.token_to_id(v) for k, v in tokenizer.special_tokens.items()}
    config_class, model_class = {"qwen2": (Qwen2Config, Qwen2ForCausalLM),
                                 "llama": (LlamaConfig, LlamaForCausalLM)}[arch]
    config = config_class(hidden_size=args.hidden_size, num_hidden_layers=args.layers, num_attention_heads=args.heads,
                          num_key_value_heads=args.kv_heads, intermediate_size=args.intermediate_size,
                          vocab_size=(vocab + 63) // 64 * 64, max_position_embeddings=args.max_position_embeddings,
                          tie_word_embeddings=True, eos_token_id=special.get("eos_token"),
                          pad_token_id=special.get("pad_token"), rope_theta=10000.0)
    torch.manual_seed(args.seed)
    model = model_class(config)
    finish(model, Path(tokenizer_dir), out, [])
    print(f"{arch} model with {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters written to {out}",
          file=sys.stderr)


def train_config(args) -> TrainConfig:
    return TrainConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size, max_length=args.max_length,
                       warmup=args.warmup, seed=args.seed, save_every=args.save_every)


def load_base(base: Path):
    from ..export.checkpoint import read_model_spec
    from ..export.verify import load_reference

    spec = read_model_spec(base)
    model = load_reference(base, spec)
    return model.to("cuda" if torch.cuda.is_available() else "cpu"), spec


def prepare_out(base: Path, out: Path, resume: bool) -> None:
    if out.resolve() == base.resolve():
        raise EdgegenError("OUT_DIR must differ from BASE_DIR: training never overwrites its starting point")
    if out.exists() and any(out.iterdir()) and not (resume and (out / "checkpoint").is_dir()):
        raise EdgegenError(f"{out} already exists and is not empty; choose a new directory "
                           "(or pass --resume to continue an interrupted run there)")
    out.mkdir(parents=True, exist_ok=True)


def steps_for(config: TrainConfig, epochs: float | None, examples: list) -> TrainConfig:
    if epochs:
        config.steps = math.ceil(epochs * len(examples) / config.batch_size)
    return config


def special_id(tokenizer: Tokenizer, key: str, fallback: int | None = None) -> int:
    token = tokenizer.special_tokens.get(key)
    token_id = tokenizer.fast.token_to_id(token) if token else fallback
    if token_id is None:
        raise EdgegenError(f"the tokenizer has no {key}; set it in tokenizer_config.json")
    return token_id


def ar_command(args) -> None:
    base, data, out, config = args.base, args.data, args.out, train_config(args)
    epochs, resume = args.epochs, args.resume
    prepare_out(base, out, resume)
    model, _ = load_base(base)
    tokenizer = Tokenizer(base)
    eos = special_id(tokenizer, "eos_token")
    examples = read_examples(data, tokenizer, config.max_length, eos)
    pad = special_id(tokenizer, "pad_token", eos)
    log = train(model, examples, partial(ar_loss, pad_id=pad), steps_for(config, epochs, examples), out, resume)
    finish(model, base, out, log)


def add_mask_token(model, base: Path, out: Path) -> int:
    """Make sure the tokenizer declares <|mask|>; a new token takes a spare embedding row, else the table grows."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.mask_token is None:
        tokenizer.add_special_tokens({"mask_token": MASK_TOKEN})
    mask_id = tokenizer.convert_tokens_to_ids(tokenizer.mask_token)
    if mask_id >= model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(mask_id + 1, pad_to_multiple_of=64)
    tokenizer.save_pretrained(out)
    return mask_id


def mars_objective(tokenizer: Tokenizer, mask_id: int, block_size: int, ar_weight: float):
    return partial(mars_loss, pad_id=special_id(tokenizer, "pad_token", special_id(tokenizer, "eos_token")),
                   mask_id=mask_id, block_size=block_size, ar_weight=ar_weight)


def mars_release(spec, block_size: int) -> dict:
    release = {"block_size": block_size}
    if spec.architecture in ("qwen2", "qwen3"):  # the layout of the released MARS checkpoints
        name = spec.architecture.capitalize()
        release.update(model_type=f"a2d-{spec.architecture}", architectures=[f"A2D{name}LMHeadModel"])
    return release


def mars_command(args) -> None:
    base, data, out, config = args.base, args.data, args.out, train_config(args)
    epochs, resume = args.epochs, args.resume
    block_size, ar_weight = args.block_size, args.ar_weight
    if block_size < 2:
        raise EdgegenError("--block-size must be at least 2 for MARS training")
    prepare_out(base, out, resume)
    model, spec = load_base(base)
    mask_id = add_mask_token(model, base, out)
    tokenizer = Tokenizer(out)
    examples = read_examples(data, tokenizer, config.max_length, special_id(tokenizer, "eos_token"))
    loss = mars_objective(tokenizer, mask_id, block_size, ar_weight)
    log = train(model, examples, loss, steps_for(config, epochs, examples), out, resume)
    finish(model, out, out, log, mars_release(spec, block_size))
    for name in TOKENIZER_FILES:  # tokenizer files the mask token did not touch
        if (base / name).is_file() and not (out / name).is_file():
            shutil.copy2(base / name, out / name)


def reader_command(args) -> None:
    """Fine-tune a generator to answer from retrieved raw-text evidence. Next-token loss only: answers are a
    few tokens, and MARS's doubled sequence would halve the training speed for no gain in them."""
    base, out, config, epochs, resume = args.base, args.out, train_config(args), args.epochs, args.resume
    evidence, questions, contexts = args.evidence, args.questions, args.contexts
    prepare_out(base, out, resume)
    model, _ = load_base(base)
    tokenizer = Tokenizer(base)
    examples = reader_examples(read_questions(evidence, questions, tokenizer), tokenizer, contexts, config.seed)
    loss = partial(ar_loss, pad_id=special_id(tokenizer, "pad_token", special_id(tokenizer, "eos_token")))
    log = train(model, examples, loss, steps_for(config, epochs, examples), out, resume)
    finish(model, base, out, log)


def memory_command(args) -> None:
    """Train a latent-memory compressor for a frozen generator (or, with --tune-generator, together with it);
    writes the layout `export-memory` reads."""
    base, out, config, epochs, resume = args.base, args.out, train_config(args), args.epochs, args.resume
    generator_dir, evidence, questions, max_tokens = args.generator, args.evidence, args.questions, args.max_tokens
    prepare_out(base, out, resume)
    compressor_lm, _ = load_base(base)
    truncate_layers(compressor_lm, args.base_layers)
    generator, _ = load_base(generator_dir)
    model = MemoryModel(compressor_lm, generator, args.retrieval_dim, args.rank, args.alpha,
                        tune_generator=args.tune_generator)
    generator_tokenizer = Tokenizer(generator_dir)
    examples = read_questions(evidence, questions, generator_tokenizer)
    loss = partial(memory_loss, tokenizer=Tokenizer(base), generator_tokenizer=generator_tokenizer,
                   max_tokens=max_tokens, distill_steps=args.distill_tokens, contexts=args.contexts, seed=config.seed)
    log = train(model, examples, loss, steps_for(config, epochs, examples), out, resume)
    save_memory(model, base, generator_dir, out, max_tokens, log, TOKENIZER_FILES)
