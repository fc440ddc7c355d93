"""Grouping from the module tree, on real architectures built from configs (random weights, nothing downloaded).

The expected groups are written from each architecture (its modeling code: which module holds the
repeated blocks, what the embeddings, final norm and head are called), not from gradviz's output.
"""

from __future__ import annotations

import os

import pytest
import torch
from gradviz_helpers import by_leaf, reference_group, tiny_bert
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from trainer_callbacks.core.errors import ConfigurationError
from trainer_callbacks.gradviz import GradNormLogger
from trainer_callbacks.gradviz.grouping import build_grouping, group_names, layer_groups, parameter_tree


def groups_of(model: nn.Module, **kw) -> tuple[str, ...]:
    return build_grouping(model, trainable_only=False, **kw).groups


def tiny_llama(layers: int = 3, tied: bool = False) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
        tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(config)


# ---- real architectures ------------------------------------------------------------------------------------


def test_bert() -> None:
    model = tiny_bert(layers=3)
    assert layer_groups(model) == {n: reference_group(n) for n, _ in model.named_parameters()}
    # BertForSequenceClassification: bert.embeddings, bert.encoder.layer (ModuleList), bert.pooler, classifier
    assert groups_of(model) == (
        "bert.embeddings",
        "bert.encoder.layer.0",
        "bert.encoder.layer.1",
        "bert.encoder.layer.2",
        "bert.pooler",
        "classifier",
    )


def test_llama() -> None:
    # LlamaForCausalLM: model.embed_tokens, model.layers (ModuleList of decoder layers), model.norm, lm_head
    assert groups_of(tiny_llama()) == (
        "model.embed_tokens",
        "model.layers.0",
        "model.layers.1",
        "model.layers.2",
        "model.norm",
        "lm_head",
    )


@pytest.mark.parametrize("tied", [True, False])
def test_gpt2(tied: bool) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
    config.tie_word_embeddings = tied
    model = GPT2LMHeadModel(config)
    # GPT2LMHeadModel: transformer.wte / wpe (token and position embeddings), transformer.h (ModuleList),
    # transformer.ln_f, lm_head; a tied lm_head IS wte's weight (named_parameters lists it once, as wte)
    head = () if tied else ("lm_head",)
    assert groups_of(model) == (
        "transformer.wte",
        "transformer.wpe",
        "transformer.h.0",
        "transformer.h.1",
        "transformer.ln_f",
        *head,
    )


def test_t5_encoder_and_decoder_blocks_are_separate() -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_decoder_layers=3, num_heads=2)
    model = T5ForConditionalGeneration(config)
    # T5: shared (embeddings; the encoder's and decoder's embed_tokens and the tied lm_head are the same
    # weight), encoder.block / decoder.block (ModuleLists), encoder / decoder .final_layer_norm
    assert groups_of(model) == (
        "shared",
        "encoder.block.0",
        "encoder.block.1",
        "encoder.final_layer_norm",
        "decoder.block.0",
        "decoder.block.1",
        "decoder.block.2",
        "decoder.final_layer_norm",
    )


def test_vit() -> None:
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=8, patch_size=4
    )
    model = ViTForImageClassification(config)
    # ViTForImageClassification (transformers 5): vit.embeddings (patches, cls token, positions),
    # vit.layers (ModuleList), vit.layernorm, classifier
    assert groups_of(model) == ("vit.embeddings", "vit.layers.0", "vit.layers.1", "vit.layernorm", "classifier")


def test_peft_llama_drops_the_wrapper_prefixes() -> None:
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(
        tiny_llama(layers=2), peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head"])
    )
    assert all(n.startswith("base_model.model.") for n, _ in model.named_parameters())
    # the whole model: Llama's groups, without PEFT's base_model.model.
    assert groups_of(model) == ("model.embed_tokens", "model.layers.0", "model.layers.1", "model.norm", "lm_head")
    # what is trained: the LoRA matrices in each layer and the saved copy of lm_head
    assert build_grouping(model).groups == ("model.layers.0", "model.layers.1", "lm_head")
    lora = [c for c in parameter_tree(model).clean if "lora_A" in c]
    assert lora[0] == "model.layers.0.self_attn.q_proj.lora_A.default.weight"


def _sentence_transformer(tmp_path, with_dense: bool) -> nn.Module:
    st_module = pytest.importorskip("sentence_transformers")
    from sentence_transformers.sentence_transformer import modules
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(40)]))
    BertTokenizer(str(vocab)).save_pretrained(tmp_path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=48, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    BertModel(config).save_pretrained(tmp_path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parts = [modules.Transformer(str(tmp_path)), modules.Pooling(16)]
    if with_dense:
        parts.append(modules.Dense(16, 8))
    return st_module.SentenceTransformer(modules=parts)


def test_sentence_transformer_is_not_one_group(tmp_path) -> None:
    model = _sentence_transformer(tmp_path, with_dense=False)
    assert isinstance(model, nn.Sequential)
    assert all(n.startswith("0.") for n, _ in model.named_parameters())  # what collapsed it to one group
    # a SentenceTransformer around a BertModel: the BertModel's groups, without the 0.model. prefix
    assert groups_of(model) == ("embeddings", "encoder.layer.0", "encoder.layer.1", "pooler")


def test_sentence_transformer_with_a_dense_head(tmp_path) -> None:
    model = _sentence_transformer(tmp_path, with_dense=True)
    # the Dense module is the SentenceTransformer's module 2 (after Transformer 0 and Pooling 1): a head
    assert groups_of(model) == ("embeddings", "encoder.layer.0", "encoder.layer.1", "pooler", "2")


def test_plain_sequential_mlp() -> None:
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
    mlp.append(nn.Linear(8, 3))
    # each Linear is a layer: the input layer 0, hidden layers 2 and 4, the head 6
    assert groups_of(mlp) == ("0", "2", "4", "6")


# ---- the structural rule on hand-built trees -------------------------------------------------------------


class Block(nn.Module):
    def __init__(self, width: int = 4, experts: int = 0) -> None:
        super().__init__()
        self.attn = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)
        self.experts = nn.ModuleList(nn.Linear(width, width) for _ in range(experts))


class OtherBlock(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.mixer = nn.Linear(width, width)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.stages = nn.Sequential(Block(experts=2), Block(experts=2))  # a numbered Sequential of blocks
        self.hybrid = nn.ModuleList([Block(), OtherBlock(), Block()])  # unlike blocks in one list
        self.scale = nn.Parameter(torch.ones(1))  # registered on the module that holds the blocks
        self.head = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))  # plain layers: one part


def test_hand_built_tree() -> None:
    groups = layer_groups(Net())
    assert groups["stages.0.experts.1.weight"] == "stages.0"  # the outermost block, not the expert
    assert groups["hybrid.1.mixer.bias"] == "hybrid.1"
    assert groups["head.2.weight"] == "head"
    assert groups["scale"] == "scale"
    # model order is named_parameters() order: a module's own parameters before its children's
    assert groups_of(Net()) == (
        "scale",
        "embed",
        "stages.0",
        "stages.1",
        "hybrid.0",
        "hybrid.1",
        "hybrid.2",
        "head",
    )


def test_wrappers_compile_and_data_parallel() -> None:
    bert = tiny_bert()
    compiled = torch.compile(bert)  # nothing is compiled before the first call
    wrapped = nn.DataParallel(compiled)  # type: ignore[type-var]  # on CPU it only forwards
    assert next(iter(dict(wrapped.named_parameters()))).startswith("module._orig_mod.")
    tree = parameter_tree(wrapped)
    assert tree.clean == tuple(n for n, _ in bert.named_parameters())
    assert groups_of(wrapped) == groups_of(bert)


def test_a_user_attribute_named_module_is_kept() -> None:
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = nn.Linear(2, 2)  # not a wrapper: a plain Module's attribute
            self.head = nn.Linear(2, 2)

    assert groups_of(Model()) == ("module", "head")


def test_module_parameter_and_callable_use_the_clean_names() -> None:
    tree = parameter_tree(nn.DataParallel(tiny_bert()))
    assert group_names(tree, "module")[:2] == ["bert.embeddings.word_embeddings", "bert.embeddings.position_embeddings"]
    assert group_names(tree, "parameter")[0] == "bert.embeddings.word_embeddings.weight"
    assert set(group_names(tree, by_leaf)) == {"weight", "bias"}


def test_include_and_exclude_match_either_name() -> None:
    model = nn.DataParallel(tiny_bert())
    assert build_grouping(model, include=["bert.encoder.*"]).groups == ("bert.encoder.layer.0", "bert.encoder.layer.1")
    assert build_grouping(model, include=["module.classifier.*"]).groups == ("classifier",)
    assert "classifier" not in build_grouping(model, exclude=["*classifier*"]).groups


_leaf = st.sampled_from(["linear", "norm"])


@st.composite
def module_trees(draw, depth: int = 0) -> nn.Module:
    kind = draw(st.sampled_from(["leaf", "list", "seq", "custom"] if depth < 3 else ["leaf"]))
    if kind == "leaf":
        return nn.Linear(2, 2) if draw(_leaf) == "linear" else nn.LayerNorm(2)
    children = draw(st.lists(module_trees(depth + 1), min_size=1, max_size=3))
    if kind == "list":
        return nn.ModuleList(children)
    if kind == "seq":
        return nn.Sequential(*children)
    custom = nn.Module()
    for i, child in enumerate(children):
        custom.add_module(draw(st.sampled_from(["a", "b", "enc", "layer", "h"])) + str(i), child)
    if draw(st.booleans()):
        custom.register_parameter("p", nn.Parameter(torch.zeros(1)))
    return custom


@given(module_trees())
def test_every_group_is_a_prefix_of_its_parameter_and_groups_keep_model_order(model: nn.Module) -> None:
    tree = parameter_tree(model)
    assert tree.clean == tree.names  # no wrapper here
    for name, group in zip(tree.names, tree.layers):
        assert name == group or name.startswith(group + ".")
    assert build_grouping(model, trainable_only=False).groups == tuple(dict.fromkeys(tree.layers))


# ---- group_by as an option ---------------------------------------------------------------------------------


def test_callable_group_by_is_saved_as_an_importable_name() -> None:
    cb = GradNormLogger(group_by=by_leaf)
    assert cb.state()["args"]["group_by"] == "gradviz_helpers:by_leaf"
    again = GradNormLogger(**cb.state()["args"])
    assert again.group_by is by_leaf


def _nested() -> object:
    def inner(name: str) -> str:
        return name

    return inner


class Grouper:
    def __call__(self, name: str) -> str:
        return name

    def method(self, name: str) -> str:
        return name


@pytest.mark.parametrize(
    "fn, shown",
    [
        (lambda name: name.split(".")[0], "<lambda>"),
        (_nested(), "_nested.<locals>.inner"),
        (Grouper().method, "Grouper.method"),
        (Grouper(), "Grouper"),
    ],
    ids=["lambda", "closure", "bound-method", "callable-instance"],
)
def test_group_by_that_cannot_be_saved_is_refused_at_construction(fn, shown) -> None:
    with pytest.raises(ConfigurationError) as info:
        GradNormLogger(group_by=fn)
    message = str(info.value)
    assert message.startswith("GradNormLogger(group_by=")
    assert f"{shown} cannot be saved with the callback's options" in message
    assert "define it at module level" in message


@pytest.mark.parametrize(
    "bad, expected",
    [
        (dict(group_by="layers"), "expected one of ('layer', 'module', 'parameter')"),
        (dict(group_by="nope.module:fn"), "cannot import 'nope.module:fn'"),
        (dict(group_by="gradviz_helpers:TokenTask.__doc__"), "not callable"),
        (dict(include=3), "include"),
        (dict(norm_type=-1), "norm_type"),
        (dict(on_nonfinite="stop"), "on_nonfinite"),
        (dict(every_n_steps=0), "every_n_steps"),
    ],
)
def test_bad_options_are_configuration_errors(bad, expected) -> None:
    with pytest.raises(ConfigurationError) as info:
        GradNormLogger(**bad)
    assert next(iter(bad)) in str(info.value) and expected in str(info.value)
