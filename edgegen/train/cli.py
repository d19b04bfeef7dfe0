"""Arguments of `edgegen train ...`; torch is imported only when a command runs."""
from pathlib import Path


def add_train(commands) -> None:
    p = commands.add_parser("train", help="train tokenizers and models (needs the train extra)",
                            description="Make models where none can be downloaded: tokenizer -> init -> ar -> mars.")
    sub = p.add_subparsers(dest="train_command", required=True)

    tok = sub.add_parser("tokenizer", help="train a byte-level BPE with ChatML specials and <|mask|>")
    tok.add_argument("out", type=Path)
    tok.add_argument("files", type=Path, nargs="+", help="text files, or chat/text JSONL")
    tok.add_argument("--vocab-size", type=int, default=4096)
    tok.set_defaults(run=command("tokenizer_command"))

    init = sub.add_parser("init", help="a randomly initialized model for a tokenizer, to pre-train with `ar`")
    init.add_argument("tokenizer", type=Path, help="directory with tokenizer.json and tokenizer_config.json")
    init.add_argument("out", type=Path)
    init.add_argument("--arch", choices=["qwen2", "llama"], default="qwen2")
    init.add_argument("--hidden-size", type=int, default=256)
    init.add_argument("--layers", type=int, default=6)
    init.add_argument("--heads", type=int, default=4)
    init.add_argument("--kv-heads", type=int, default=2)
    init.add_argument("--intermediate-size", type=int, default=768)
    init.add_argument("--max-position-embeddings", type=int, default=2048)
    init.add_argument("--seed", type=int, default=0)
    init.set_defaults(run=command("init_command"))

    ar = sub.add_parser("ar", help="next-token training: pre-training on text or SFT on chat JSONL")
    add_training_options(ar)
    ar.set_defaults(run=command("ar_command"))

    mars = sub.add_parser("mars", help="MARS multi-token fine-tuning of a qwen2/llama checkpoint")
    add_training_options(mars)
    mars.add_argument("--block-size", type=int, required=True)
    mars.add_argument("--ar-weight", type=float, default=1.0, help="weight of the clean (AR) loss term")
    mars.set_defaults(run=command("mars_command"))

    reader = sub.add_parser("reader", help="fine-tune a generator to answer from retrieved evidence (raw text)",
                            description="The teacher for `train memory`: questions over their evidence plus hard "
                                        "negatives, in the prompt layout of `edgegen rag --as-text`.")
    add_training_options(reader, data=False)
    add_knowledge_options(reader, contexts=5)
    reader.set_defaults(run=command("reader_command"))

    memory = sub.add_parser("memory", help="train a latent-memory compressor for a frozen generator",
                            description="Reconstruction + InfoNCE with hard negatives + distillation from the "
                                        "generator reading raw text; writes what `edgegen export-memory` reads.")
    add_training_options(memory, data=False)
    add_knowledge_options(memory, contexts=4)
    memory.add_argument("--generator", type=Path, required=True,
                        help="the generator's Hugging Face checkpoint (frozen; the latents are made for it)")
    memory.add_argument("--base-layers", type=int, help="keep only the first N layers of BASE")
    memory.add_argument("--retrieval-dim", type=int, default=512)
    memory.add_argument("--rank", type=int, default=64, help="LoRA rank")
    memory.add_argument("--alpha", type=float, default=128, help="LoRA alpha (scale = alpha / rank)")
    memory.add_argument("--max-tokens", type=int, default=128, help="evidence is cut to this many tokens")
    memory.add_argument("--distill-tokens", type=int, default=16, help="teacher tokens distilled per question")
    memory.add_argument("--tune-generator", action="store_true",
                        help="train the generator too, on gold answers (from latents, from text, from a slot "
                             "holding the answer's own embedding) with latents aligned to that slot, instead of "
                             "distilling from it frozen (for small generators; writes OUT/generator)")
    memory.set_defaults(run=command("memory_command"))


def add_knowledge_options(p, contexts: int) -> None:
    p.add_argument("--evidence", type=Path, required=True, help='JSONL rows {"id", "text"}')
    p.add_argument("--questions", type=Path, required=True,
                   help='JSONL rows {"question", "answer", "positive_ids", "hard_negative_ids"}')
    p.add_argument("--contexts", type=int, default=contexts,
                   help=f"evidence items per prompt at most, the right one plus hard negatives (default {contexts})")


def add_training_options(p, data: bool = True) -> None:
    p.add_argument("base", type=Path, help="Hugging Face checkpoint directory to start from")
    if data:
        p.add_argument("data", type=Path,
                       help='JSONL: {"messages": [...]} (loss on assistant turns) or {"text": ...}')
    p.add_argument("out", type=Path)
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=1000)
    length.add_argument("--epochs", type=float)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512, help="longer examples are skipped")
    p.add_argument("--warmup", type=float, default=0.03, help="fraction of steps")
    p.add_argument("--save-every", type=int, default=200, help="steps between resumable checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in OUT")


def command(name: str):
    """The function of train/commands.py that runs a parsed command (imported then: it needs torch)."""
    def run(args) -> int:
        from . import commands

        getattr(commands, name)(args)
        return 0
    return run
