"""The demo's text classification task, generated here so the demo needs no download.

Sentences of filler words carry one to three sentiment words; ``not`` before a sentiment
word flips it; the label is the sign of the sum. A share of the labels is flipped at
random (``label_noise``, in train and eval alike), so the best reachable eval accuracy is
about ``1 - label_noise`` and a model that keeps training memorises the flipped train
labels: eval metrics improve, then plateau, then get worse. That gives every plugin
something to do (early stopping, LR reductions on the plateau, a best checkpoint to keep).

The tokenizer is a ``PreTrainedTokenizerFast`` over a ``tokenizers`` WordLevel model whose
vocabulary is the task's own words, with BERT's special tokens: it is saved and reloaded
like any Hugging Face tokenizer (``save_pretrained`` / ``AutoTokenizer.from_pretrained``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

POSITIVE = [
    "good",
    "great",
    "superb",
    "fine",
    "lovely",
    "brilliant",
    "solid",
    "charming",
    "delightful",
    "superior",
    "pleasant",
    "moving",
    "witty",
    "gripping",
    "tender",
]
NEGATIVE = [
    "bad",
    "awful",
    "poor",
    "dull",
    "boring",
    "weak",
    "clumsy",
    "dreadful",
    "mediocre",
    "tedious",
    "bland",
    "shallow",
    "messy",
    "tiresome",
    "grim",
]
NEGATION = "not"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
LABELS = ("negative", "positive")


@dataclass(frozen=True)
class TaskConfig:
    """Sizes and difficulty of the generated task."""

    train_size: int = 1000
    eval_size: int = 400
    label_noise: float = 0.1
    negation_rate: float = 0.15
    filler_words: int = 40
    min_words: int = 6
    max_words: int = 20
    seed: int = 0


QUICK_TASK = TaskConfig(train_size=800, eval_size=200)
"""The reduced size used by ``trainer-callbacks demo --quick``: overfits within a few epochs."""


def filler(config: TaskConfig = TaskConfig()) -> list[str]:
    return [f"w{i}" for i in range(config.filler_words)]


def vocabulary(config: TaskConfig = TaskConfig()) -> list[str]:
    """Every token of the task, special tokens first (ids are positions in this list)."""
    return [*SPECIAL_TOKENS, NEGATION, *POSITIVE, *NEGATIVE, *filler(config)]


def _sentence(rng: random.Random, config: TaskConfig, words: Sequence[str]) -> tuple[str, int]:
    while True:
        tokens = [rng.choice(words) for _ in range(rng.randint(config.min_words, config.max_words))]
        score = 0
        for _ in range(rng.randint(1, 3)):
            polarity = rng.choice((1, -1))
            word = rng.choice(POSITIVE if polarity > 0 else NEGATIVE)
            negated = rng.random() < config.negation_rate
            at = rng.randint(0, len(tokens))
            tokens[at:at] = [NEGATION, word] if negated else [word]
            score += -polarity if negated else polarity
        if score != 0:
            return " ".join(tokens), int(score > 0)


def generate(config: TaskConfig = TaskConfig()) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """``(train, eval)`` lists of ``(text, label)``; the same ``config`` always gives the same data."""
    rng = random.Random(config.seed)
    words = filler(config)

    def split(n: int) -> list[tuple[str, int]]:
        rows = []
        for _ in range(n):
            text, label = _sentence(rng, config, words)
            if rng.random() < config.label_noise:
                label = 1 - label
            rows.append((text, label))
        return rows

    return split(config.train_size), split(config.eval_size)


def build_tokenizer(
    config: TaskConfig = TaskConfig(), model_max_length: int = 64, words: Sequence[str] | None = None
) -> Any:
    """A BERT-style ``PreTrainedTokenizerFast`` (``[CLS] text [SEP]``) for the task's words.

    ``words``: another word list (e.g. every whitespace-separated word of a CSV file); the
    special tokens come first either way, and unknown words map to ``[UNK]``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokens = vocabulary(config) if words is None else [*SPECIAL_TOKENS, *dict.fromkeys(words)]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=model_max_length,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


class EncodedDataset:
    """A map-style dataset of tokenized rows, as ``Trainer`` takes it (``input_ids``, ``labels``...)."""

    def __init__(self, rows: Sequence[tuple[str, int]], tokenizer: Any, max_length: int = 64):
        texts = [text for text, _ in rows]
        self.encodings = tokenizer(texts, truncation=True, max_length=max_length)
        self.labels = [int(label) for _, label in rows]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {key: values[index] for key, values in self.encodings.items()}
        item["labels"] = self.labels[index]
        return item


def accuracy(eval_pred: Any) -> dict[str, float]:
    """``compute_metrics`` for ``Trainer``: ``{"accuracy": ...}`` (logged as ``eval_accuracy``)."""
    import numpy as np

    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    return {"accuracy": float((np.asarray(logits).argmax(-1) == np.asarray(labels)).mean())}
