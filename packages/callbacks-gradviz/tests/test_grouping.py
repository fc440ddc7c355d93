"""Grouping on real model parameter names."""

from __future__ import annotations

import pytest
from gradviz_helpers import reference_group, tiny_bert
from hypothesis import given
from hypothesis import strategies as st

from trainer_callbacks.core.errors import ConfigurationError
from trainer_callbacks.gradviz import GradNormLogger
from trainer_callbacks.gradviz.grouping import build_grouping, clean_name, group_names


def test_layer_groups_of_a_real_bert() -> None:
    names = [n for n, _ in tiny_bert(layers=3).named_parameters()]
    assert group_names(names, "layer") == [reference_group(n) for n in names]
    _, grouping = build_grouping(names, "layer")
    assert grouping.groups == (
        "bert.embeddings",
        "bert.encoder.layer.0",
        "bert.encoder.layer.1",
        "bert.encoder.layer.2",
        "bert.pooler",
        "classifier",
    )


def test_layer_groups_of_decoder_style_names() -> None:
    # GPT-2 and Llama naming (written by hand from their modeling files)
    gpt2 = [
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.h.0.attn.c_attn.weight",
        "transformer.h.1.mlp.c_fc.bias",
        "transformer.ln_f.weight",
        "lm_head.weight",
    ]
    assert group_names(gpt2) == [
        "transformer.wte",
        "transformer.wpe",
        "transformer.h.0",
        "transformer.h.1",
        "transformer.ln_f",
        "lm_head",
    ]
    llama = [
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.10.mlp.up_proj.weight",
        "model.norm.weight",
        "lm_head.weight",
        "logit_scale",
    ]
    assert group_names(llama) == [
        "model.embed_tokens",
        "model.layers.0",
        "model.layers.10",
        "model.norm",
        "lm_head",
        "logit_scale",
    ]


def test_wrapper_prefixes_are_ignored() -> None:
    assert group_names(
        ["module._orig_mod.bert.encoder.layer.3.output.dense.weight", "module.bert.embeddings.LayerNorm.weight"]
    ) == ["bert.encoder.layer.3", "bert.embeddings"]


def test_module_parameter_and_callable() -> None:
    names = [
        "bert.encoder.layer.0.attention.self.query.weight",
        "bert.encoder.layer.0.attention.self.query.bias",
        "classifier.weight",
    ]
    assert group_names(names, "module") == ["bert.encoder.layer.0.attention.self.query"] * 2 + ["classifier"]
    assert group_names(names, "parameter") == names
    assert group_names(names, lambda n: n.split(".")[-1]) == ["weight", "bias", "weight"]


def test_callable_group_by_is_saved_as_an_importable_name() -> None:
    cb = GradNormLogger(group_by=clean_name)
    assert cb.state()["args"]["group_by"] == "trainer_callbacks.gradviz.grouping:clean_name"
    again = GradNormLogger(**cb.state()["args"])
    assert again.group_by is clean_name


@pytest.mark.parametrize(
    "bad",
    [
        dict(group_by="layers"),
        dict(norm_type=-1),
        dict(on_nonfinite="stop"),
        dict(every_n_steps=0),
        dict(include=3),
        dict(group_by="nope.module:fn"),
    ],
)
def test_bad_options_are_configuration_errors(bad) -> None:
    with pytest.raises(ConfigurationError) as info:
        GradNormLogger(**bad)
    assert next(iter(bad)) in str(info.value)


_component = st.sampled_from(["a", "b", "enc", "layer", "h", "0", "1", "12", "w", "bias"])


@given(st.lists(st.lists(_component, min_size=1, max_size=6).map(".".join), min_size=1, max_size=30, unique=True))
def test_layer_group_is_a_prefix_and_groups_keep_model_order(names: list[str]) -> None:
    groups = group_names(names, "layer")
    for name, group in zip(names, groups):
        assert name == group or name.startswith(group + ".")
    _, grouping = build_grouping(names, "layer")
    first_seen = list(dict.fromkeys(groups))
    assert list(grouping.groups) == first_seen
