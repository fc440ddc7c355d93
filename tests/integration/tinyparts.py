"""Tiny models, a tokenizer and data sets for the integration suite, all made here, nothing downloaded.

The tokenizer is a word-level vocabulary trained by the ``tokenizers`` library on generated
sentences of a made-up language (words ``w0`` .. ``w39``); the models are built from configs
with random weights (2 layers, hidden size 32).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

WORDS = [f"w{i}" for i in range(40)]
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "[CLS]", "[SEP]", "[MASK]"]


def sentences(n: int, seed: int) -> list[str]:
    """``n`` generated sentences of 4 to 10 words (deterministic for a seed)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))) for _ in range(n)]


def train_tokenizer() -> Any:
    """A ``PreTrainedTokenizerFast`` over a WordLevel model trained in-process on generated text."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.train_from_iterator(sentences(300, seed=123), trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "attention_mask"],
    )


def tiny_llama(tokenizer: Any, seed: int = 0) -> Any:
    """A ``LlamaForCausalLM`` with 2 layers, hidden size 32 and untied embeddings, random weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def tiny_sentence_transformer(tokenizer: Any, folder: Path, seed: int = 0) -> Any:
    """A SentenceTransformer: 2-layer DistilBERT (saved to ``folder``, loaded from there), mean pooling, Dense head."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(seed)
    config = DistilBertConfig(
        vocab_size=len(tokenizer),
        dim=32,
        hidden_dim=64,
        n_layers=2,
        n_heads=4,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
    )
    DistilBertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    encoder = modules.Transformer(str(folder), max_seq_length=32)
    pooling = modules.Pooling(encoder.get_embedding_dimension(), "mean")
    head = modules.Dense(32, 16)
    return SentenceTransformer(modules=[encoder, pooling, head], device="cpu")


def text_dataset(n: int, seed: int) -> Any:
    """``{"text": ...}``: what SFTTrainer trains a language model on."""
    from datasets import Dataset

    return Dataset.from_dict({"text": sentences(n, seed)})


def preference_dataset(n: int, seed: int) -> Any:
    """``{"prompt", "chosen", "rejected"}`` for DPO (completions start with a space: a token boundary)."""
    from datasets import Dataset

    texts = sentences(3 * n, seed)
    return Dataset.from_dict(
        {
            "prompt": texts[:n],
            "chosen": [" " + t for t in texts[n : 2 * n]],
            "rejected": [" " + t for t in texts[2 * n :]],
        }
    )


def similarity_dataset(n: int, seed: int) -> Any:
    """``{"sentence1", "sentence2", "score"}`` with scores in [0, 1]."""
    from datasets import Dataset

    rng = random.Random(seed)
    return Dataset.from_dict(
        {
            "sentence1": sentences(n, seed),
            "sentence2": sentences(n, seed + 1000),
            "score": [rng.random() for _ in range(n)],
        }
    )


def causal_lm_dataset(tokenizer: Any, n: int, seed: int, length: int = 16) -> Any:
    """Tokenized sentences padded to ``length``, ``labels`` = ``input_ids`` with padding ignored (-100)."""
    from datasets import Dataset

    encoded = tokenizer(sentences(n, seed), padding="max_length", truncation=True, max_length=length)
    labels = [
        [tok if mask else -100 for tok, mask in zip(ids, attention, strict=True)]
        for ids, attention in zip(encoded["input_ids"], encoded["attention_mask"], strict=True)
    ]
    return Dataset.from_dict(
        {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}
    )
