"""The `edgegen` command."""
import argparse
import errno
import importlib.util
import json
import os
import sys
from pathlib import Path

from . import __version__, load
from .argtypes import option_parser, whole_number
from .build_engine import add_build_engine
from .chat import run_chat
from .doctor import add_doctor
from .rag_cli import add_rag
from .runtime import EdgegenError
from .runtime.grammar import schema_of
from .runtime.jsonl import read_text
from .runtime.options import OPTION_FIELDS
from .runtime.providers import MAX_THREADS
from .serve import add_serve
from .train.cli import add_train

WORKSTATION_MODULES = {"torch", "transformers", "onnx", "safetensors"}  # the export/train extras, never the device

def add_export(commands) -> None:
    p = commands.add_parser("export", help="convert a Hugging Face checkpoint directory to an edgegen model",
                            description="Convert a Hugging Face checkpoint (qwen2, llama, MARS a2d-qwen2) to ONNX.")
    p.add_argument("src", type=Path, help="checkpoint directory: config.json, safetensors, tokenizer files "
                                          "(with --from-onnx: an optimum ONNX export)")
    p.add_argument("out", type=Path, help="output model directory")
    p.add_argument("--from-onnx", action="store_true",
                   help="SRC is a decoder exported by optimum (model.onnx or onnx/model.onnx, config.json, tokenizer "
                        "files), as the onnx-community models are: write OUT with the edgegen.json that loading SRC "
                        "infers each time, so OUT loads faster; the graph, config and tokenizer files are hard-linked "
                        "into OUT (copied when OUT is on another filesystem). Takes --max-context and --force only")
    p.add_argument("--dtype", choices=["fp32", "fp16", "int8", "int4"], default="fp32",
                   help="precision: fp32/fp16 weights and compute; int8 (dynamic) or int4 (MatMulNBits) weights "
                        "with fp32 compute")
    p.add_argument("--max-context", type=int, help="longest sequence the graph supports (default: the model's)")
    p.add_argument("--block-size", type=int, help="MARS block size the model was trained with "
                                                  "(default: read from the config or the model name)")
    p.add_argument("--force", action="store_true", help="replace OUT if it holds an earlier export")
    p.add_argument("--latent-inputs", action="store_true",
                   help="let the graph take latent vectors in place of token embeddings (latent-memory RAG)")
    p.add_argument("--attention", choices=["gqa", "standard"], default="gqa",
                   help="gqa: onnxruntime's fused GroupQueryAttention and norms (fastest on CPU and CUDA); "
                        "standard: plain ONNX ops only, so TensorRT can take the whole graph")
    p.add_argument("--topk", type=int, default=0, metavar="K",
                   help="also output each kept row's K most likely tokens and their log-probabilities; greedy, "
                        "threshold (probability or margin) and verify decoding, and sampling with top_k <= K, then "
                        "read K values a row instead of the whole vocabulary: worth it on a GPU, where logits "
                        "would cross to the host every step; on a CPU it costs a little (default 0: off)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the final comparison against transformers")
    p.set_defaults(run=run_export)


def run_export(args) -> int:
    from .export import export_model
    from .export.from_onnx import export_from_onnx

    if args.from_onnx:
        if flags := checkpoint_only_flags(args):
            raise EdgegenError(f"--from-onnx takes the graph as it is; drop {', '.join(flags)}, which shape graphs "
                               "built from a checkpoint")
        manifest = export_from_onnx(args.src, args.out, args.force, args.max_context)
    else:
        manifest = export_model(args.src, args.out, args.dtype, args.max_context, args.block_size, args.force,
                                args.verify, latent_inputs=args.latent_inputs, attention=args.attention,
                                topk=args.topk)
    mode = "AR only" if manifest.mask_token_id is None else f"MARS block size {manifest.block_size or 'unknown'}"
    print(f"exported to {args.out} ({manifest.weights or manifest.dtype}, max context {manifest.max_context}, "
          f"{mode})", file=sys.stderr)
    return 0


def checkpoint_only_flags(args) -> list[str]:
    """The export options given that shape a graph built from a checkpoint."""
    given = {"--dtype": args.dtype != "fp32", "--block-size": args.block_size is not None,
             "--latent-inputs": args.latent_inputs, "--attention": args.attention != "gqa", "--topk": args.topk != 0}
    return [flag for flag, used in given.items() if used]


def add_export_memory(commands) -> None:
    p = commands.add_parser("export-memory", help="convert a latent-memory compressor to ONNX",
                            description="Export a latent-memory compressor (base LM + LoRA compress/query + heads) "
                                        "to compress.onnx and query.onnx.")
    p.add_argument("src", type=Path, help="directory with memory.safetensors (or the reference's .pt) and base/")
    p.add_argument("out", type=Path)
    p.add_argument("--base", type=Path, help="the base compressor checkpoint (default: SRC/base)")
    p.add_argument("--trust-pickle", action="store_true", help="allow loading a .pt pickle, which can run code")
    p.add_argument("--lora-scale", type=float, help="LoRA alpha / rank (default: from the config, else 2.0)")
    p.add_argument("--max-evidence-tokens", type=int, help="default: what it was trained with, else 128")
    p.add_argument("--force", action="store_true", help="replace OUT if it holds an earlier compressor export")
    p.set_defaults(run=run_export_memory)


def run_export_memory(args) -> int:
    from .export.compressor_graph import export_memory

    manifest = export_memory(args.src, args.out, args.base, args.trust_pickle, args.lora_scale,
                         args.max_evidence_tokens, args.force)
    print(f"exported compressor to {args.out} (retrieval {manifest.retrieval_dim}-d, generator latents "
          f"{manifest.generator_hidden}-d)", file=sys.stderr)
    return 0


def add_model_options(p) -> None:
    p.add_argument("model", type=Path, nargs="?", help="exported model directory (default: the bundled model)")
    p.add_argument("--provider", default="auto", help="auto, cpu, cuda or tensorrt")
    p.add_argument("--threads", type=whole_number(1, MAX_THREADS), help="CPU threads for onnxruntime")
    p.add_argument("--max-context", type=whole_number(1), help="KV cache length (default: min(2048, the export's))")
    p.add_argument("--prompt-cache", type=Path, metavar="DIR",
                   help="keep prompts' KV in DIR, so that later runs skip the prefill of prefixes seen before "
                        "(a long system prompt is paid once)")


def add_decoding_options(p) -> None:
    """One flag per generation option, from its declaration (runtime/options.py)."""
    for name, f in OPTION_FIELDS.items():
        flag, meta = "--" + name.replace("_", "-"), f.metadata
        if meta["kind"] == "format":  # structured output has flags of its own, below
            continue
        if meta["kind"] == "bool":
            p.add_argument(flag, action="store_true", help=meta["help"])
        elif meta["kind"] == "list":
            p.add_argument(flag, action="append", help=meta["help"])
        else:
            shown = " (default: %(default)s)" if f.default is not None else ""
            p.add_argument(flag, type=option_parser(name), default=f.default, choices=meta["choices"] or None,
                           metavar=None if meta["choices"] else name.upper(), help=meta["help"] + shown)


    output = p.add_mutually_exclusive_group()
    output.add_argument("--json-schema", type=Path, metavar="FILE", help="structured output: JSON fitting this schema")
    output.add_argument("--json-object", action="store_true", help="structured output: any JSON object")
    output.add_argument("--regex", help="structured output: text matching this regular expression")
    output.add_argument("--grammar", type=Path, metavar="FILE", help="structured output: a Lark grammar")


def decoding_options(args) -> dict:
    """The generation options given on the command line; the rest keep their declared defaults."""
    options = {name: getattr(args, name) for name in OPTION_FIELDS if getattr(args, name, None) is not None}
    if args.json_schema:
        options["response_format"] = schema_of(args.json_schema)
    elif args.json_object:
        options["response_format"] = {"type": "json_object"}
    elif args.regex:
        options["response_format"] = {"type": "regex", "regex": args.regex}
    elif args.grammar:
        options["response_format"] = {"type": "grammar", "grammar": read_text(args.grammar)}
    return options


def load_model(args):
    return load(args.model, provider=args.provider, max_context=args.max_context, threads=args.threads,
                prompt_cache=args.prompt_cache)


def add_generate(commands) -> None:
    p = commands.add_parser("generate", help="generate text from a prompt",
                            description="Generate text with AR or MARS block decoding; streams to stdout.")
    add_model_options(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="prompt text")
    source.add_argument("--prompt-file", type=Path, help="read the prompt from this UTF-8 file")
    p.add_argument("--chat", action="store_true", help="wrap the prompt as one user message in the chat template")
    add_decoding_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object with the text and stats, nothing else")
    p.set_defaults(run=run_generate)


def add_chat(commands) -> None:
    p = commands.add_parser("chat", help="an offline terminal chat",
                            description="Chat in the terminal: streaming, multi-turn with KV reuse, /help.")
    add_model_options(p)
    p.add_argument("--system", help="system prompt")
    p.add_argument("--resume", type=Path, metavar="FILE", help="continue a conversation saved with /save")
    add_decoding_options(p)
    p.set_defaults(run=lambda args: run_chat(load_model(args), args.system, decoding_options(args), args.resume))


def read_prompt(args) -> str:
    if args.prompt is not None:
        return args.prompt
    if not args.prompt_file.is_file():
        raise EdgegenError(f"cannot read --prompt-file {args.prompt_file}: no such file")
    return read_text(args.prompt_file)


def run_generate(args) -> int:
    prompt = read_prompt(args)
    model = load_model(args)
    generation = model.stream(prompt, chat=args.chat, **decoding_options(args))
    for piece in generation:
        if not args.json:
            sys.stdout.write(piece)
            sys.stdout.flush()
    result, stats = generation.result, generation.result.stats
    if args.json:
        print(json.dumps({"text": result.text, "token_ids": result.token_ids, "prompt_tokens": stats.prompt_tokens,
                          "new_tokens": stats.new_tokens, "decoded_tokens": stats.decoded_tokens,
                          "forwards": stats.forwards,
                          "tokens_per_forward": stats.tokens_per_forward, "ttft_ms": stats.ttft_ms,
                          "decode_tokens_per_s": stats.decode_tokens_per_s, "stop_reason": result.stop_reason,
                          "mode": stats.mode, "drafts_proposed": stats.drafts_proposed,
                          "drafts_accepted": stats.drafts_accepted, "drafts_by_source": stats.drafts_by_source}))
    else:
        print(file=sys.stdout)
        print(f"[{stats.new_tokens} tokens, {stats.tokens_per_forward:.2f} tokens/forward, "
              f"TTFT {stats.ttft_ms:.0f} ms, {stats.decode_tokens_per_s:.1f} tokens/s, "
              f"stop: {result.stop_reason}]", file=sys.stderr)
    return 0


def add_bench(commands) -> None:
    p = commands.add_parser("bench", help="compare decoding configurations on one model",
                            description="TTFT, prefill and decode speed, tokens per forward, step latency and peak "
                                        "memory per configuration, alternating configurations prompt by prompt.")
    add_model_options(p)
    p.add_argument("--configs", nargs="+", help="MODE[:PARAM][@BLOCK], PARAM threshold's τ or verify's drafts, e.g. "
                                                "ar verify verify:lookup@4 threshold:0.9@auto (default: ar, verify, "
                                                "and threshold:0.9 on a MARS model)")
    p.add_argument("--prompts", type=Path,
                   help="one prompt per line, or JSONL with prompt/messages (default: built-in)")
    p.add_argument("--raw", action="store_true", help="feed prompts as they are, without the chat template")
    p.add_argument("--prompt-tokens", type=whole_number(1),
                   help="instead of prompts: one prompt of N arbitrary token ids (speed only, e.g. for random-weight "
                        "models)")
    p.add_argument("--max-new-tokens", type=whole_number(1), default=64)
    p.add_argument("--repeat", type=whole_number(1), default=3)
    p.add_argument("--warmup", type=whole_number(0), default=1, help="repetitions run first and not counted")
    p.add_argument("--compare", choices=["onnxruntime-genai"], help="also run onnxruntime-genai (its AR and its "
                                                                       "n-gram speculation) on the same prompts")
    p.add_argument("--genai-model", type=Path, help="the onnxruntime-genai model built from the same checkpoint")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--plot", type=Path, help="write a bar chart PNG here")
    p.set_defaults(run=run_bench)


def run_bench(args) -> int:
    from . import bench

    if args.plot and importlib.util.find_spec("matplotlib") is None:  # say so before the benchmark, not after
        raise EdgegenError("--plot needs matplotlib: pip install -e '.[bench]'")
    model = load_model(args)
    configs = [bench.parse_config(c) for c in args.configs] if args.configs else bench.default_configs(model)
    genai = None
    if args.compare:
        if not args.genai_model:
            raise EdgegenError("--compare onnxruntime-genai needs --genai-model DIR, a model its builder made from "
                               "the same checkpoint")
        genai = [bench.GenaiRunner(args.genai_model, args.threads, speculative)
                 for speculative in (None, bench.GENAI_NGRAM)]
    if args.prompt_tokens:
        prompt_ids = [bench.synthetic_prompt(model, args.prompt_tokens)]
    else:
        prompt_ids = [model.encode_prompt(p, chat=not args.raw) for p in bench.read_prompts(args.prompts)]
    summaries = bench.benchmark(model, prompt_ids, configs, args.max_new_tokens, args.repeat, args.warmup, genai)
    settings = {"max_new_tokens": args.max_new_tokens, "repeat": args.repeat, "warmup": args.warmup,
                "prompts": str(args.prompts or ("synthetic" if args.prompt_tokens else "built-in")),
                "threads": args.threads, "provider": model.engine.provider, "max_context": model.max_context,
                "kv_cache_bytes": model.engine.kv_bytes}
    if args.json:
        print(bench.as_json(model.path, summaries, settings))
    else:
        bench.print_table(summaries)
        print(f"KV cache: {model.engine.kv_bytes / 2**20:.1f} MiB for {model.max_context} tokens (--max-context)",
              file=sys.stderr)
    if genai:
        best, rival, ratio = bench.best_ratio(summaries)
        print(f"best edgegen ({best['config']}) / best onnxruntime-genai ({rival['config']}) decode tokens/s: "
              f"{ratio:.2f}x", file=sys.stderr)
    if args.plot:
        bench.plot(summaries, args.plot)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="edgegen", description="On-device LLM inference with MARS block decoding.")
    parser.add_argument("--version", action="version", version=f"edgegen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_export(commands)
    add_export_memory(commands)
    add_generate(commands)
    add_chat(commands)
    add_rag(commands, add_decoding_options, decoding_options)
    add_bench(commands)
    add_serve(commands, add_model_options, whole_number)
    add_doctor(commands)
    add_build_engine(commands)
    add_train(commands)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except EdgegenError as e:
        print(f"edgegen: error: {e}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:
        if e.name not in WORKSTATION_MODULES:
            raise
        print(f"edgegen: error: `edgegen {args.command}` needs {e.name}, which a device install leaves out: "
              "pip install -e '.[export,train]'", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nedgegen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `edgegen rag ls | head -1`: the reader has all it wanted
        silence_stdout()
        return 141  # as a shell reports a process ended by SIGPIPE
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        silence_stdout()
        print(f"edgegen: error: cannot write the output: {e.strerror}", file=sys.stderr)
        return 1


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit does not fail a second time."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
