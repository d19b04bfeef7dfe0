"""Train a byte-level BPE tokenizer with the ChatML specials and <|mask|>."""
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHATML_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MASK_TOKEN = "<|mask|>"


def train_tokenizer(texts, out: Path, vocab_size: int, with_mask: bool = True, show_progress: bool = True) -> int:
    """Train on an iterable of strings; save tokenizer.json and tokenizer_config.json (with a chat template).
    Returns the vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=CHATML_TOKENS + [MASK_TOKEN] * with_mask,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=show_progress)
    tokenizer.train_from_iterator(texts, trainer)
    mask = {"mask_token": MASK_TOKEN} if with_mask else {}
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                            chat_template=CHATML_TEMPLATE, **mask).save_pretrained(out)
    return tokenizer.get_vocab_size()
