"""The BERT-style models the benchmarks train and measure (random init, no download).

``bert-mini``'s shape (``google/bert_uncased_L-4_H-256_A-4``: hidden 256, 4 heads,
intermediate 1024, BERT's 30522-token vocabulary) with a configurable number of layers.
A ``BertForSequenceClassification`` has ``5 + 16 * layers + 4`` parameter tensors
(embeddings 5; per layer: query/key/value/attention-output weight+bias, two LayerNorms,
intermediate and output dense; pooler 2; classifier 2): 73, 137 and 201 for 4, 8 and 12
layers.
"""

from __future__ import annotations

from typing import Any

VOCAB = 30522


def bert_config(layers: int = 4, hidden: int = 256, vocab: int = VOCAB, max_positions: int = 512) -> Any:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(hidden // 64, 1),
        intermediate_size=4 * hidden,
        max_position_embeddings=max_positions,
        num_labels=2,
    )


def bert(layers: int = 4, hidden: int = 256, vocab: int = VOCAB, seed: int = 0) -> Any:
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(bert_config(layers, hidden, vocab))


def tensor_count(layers: int) -> int:
    """Parameter tensors of :func:`bert` with ``layers`` layers (see the module docstring)."""
    return 5 + 16 * layers + 4
