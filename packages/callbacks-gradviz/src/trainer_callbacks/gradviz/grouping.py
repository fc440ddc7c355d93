"""Which group each parameter's gradient norm is reported under: a pure function of the module tree.

``group_by="layer"`` (the default) finds the layers of a model from its MODULE STRUCTURE,
not from the numbers in parameter names:

* **Blocks** are the children of a block container: an ``nn.ModuleList`` (``model.layers``,
  ``encoder.layer``, ``h``, ``encoder.block`` and ``decoder.block`` of T5, each separately),
  or a numbered ``nn.Sequential`` whose children with parameters are at least two composite
  modules of one type (``blocks = nn.Sequential(*[Block() for _ in range(n)])``). A
  parameter inside a block belongs to the OUTERMOST block around it: ``model.layers.3``, not
  ``model.layers.3.mlp.experts.0``. An ``nn.Sequential`` of plain layers
  (``nn.Sequential(nn.Linear, nn.Tanh, nn.Linear)``) is one part of a model, not a stack
  of blocks; neither is a ``SentenceTransformer`` (a ``Sequential`` of unlike modules).
* **Every other parameter** belongs to the shortest prefix of its module path that does not
  contain a block: ``embeddings`` (``bert.embeddings``, ``model.embed_tokens``,
  ``transformer.wte``), the final norm (``model.norm``, ``encoder.final_layer_norm``), the
  head (``classifier``, ``lm_head``). A parameter registered directly on a module that
  contains blocks (or on the root) is a group of its own.
* **Names** drop the prefixes that wrappers insert, found from the wrapping module's type:
  ``module.`` of DDP/DataParallel, ``_orig_mod.`` of ``torch.compile``,
  ``_fsdp_wrapped_module.``/``_checkpoint_wrapped_module.`` (anywhere in the path),
  ``base_model.model.`` of a PEFT model, ``0.model.`` (``0.auto_model.`` in older versions)
  of a ``SentenceTransformer``. A prefix is dropped only when no other name then clashes.

``"module"`` groups by the module that owns the parameter, ``"parameter"`` by the parameter,
both with the wrapper prefixes dropped, and a callable ``name -> group`` receives that
cleaned name. Groups are listed in model order (order of first appearance in
``named_parameters()``). Everything here only reads the module tree: it runs on a model
built from a config, without a Trainer.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

GroupBy = str | Callable[[str], str]

GROUP_BY_CHOICES = ("layer", "module", "parameter")

_ANYWHERE = ("_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module")
"""Private attribute names of wrappers (torch.compile, FSDP1, activation checkpointing)."""

_WRAPPED_BY_LIBRARY = {
    "torch.": ("module",),  # DistributedDataParallel, DataParallel
    "deepspeed": ("module",),  # DeepSpeedEngine
    "peft.": ("base_model", "model"),  # PeftModel.base_model, a tuner's (LoraModel...) .model
    "sentence_transformers.": ("0", "model", "auto_model"),  # SentenceTransformer[0], Transformer.model
}


def _wrapped_children(module: nn.Module) -> tuple[str, ...]:
    """Names of the children through which ``module`` only wraps another model (see the module docstring)."""
    library = type(module).__module__ or ""
    for prefix, names in _WRAPPED_BY_LIBRARY.items():
        if library.startswith(prefix):
            return names + _ANYWHERE
    return _ANYWHERE


@dataclass(frozen=True)
class ParameterTree:
    """The parameters of a model as ``named_parameters()`` lists them, with what grouping needs.

    ``names``: the names as ``model.named_parameters()`` gives them; ``clean``: the same
    names without wrapper prefixes; ``layers``: the ``"layer"`` group of each;
    ``trainable``: ``requires_grad`` of each.
    """

    names: tuple[str, ...]
    clean: tuple[str, ...]
    layers: tuple[str, ...]
    trainable: tuple[bool, ...]


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def parameter_tree(model: nn.Module) -> ParameterTree:
    """Clean names and ``"layer"`` groups of every parameter of ``model`` (see the module docstring)."""
    named = list(model.named_parameters())
    owners = [n.rpartition(".")[0] for n, _ in named]
    holding: set[str] = {""}
    for owner in owners:
        parts = owner.split(".") if owner else []
        holding.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))

    modules = dict(model.named_modules())
    clean_path: dict[str, str] = {"": ""}
    blocks: set[str] = set()  # raw paths of blocks
    for path, module in modules.items():
        if path not in holding:
            continue
        kids = [(name, child) for name, child in module.named_children() if _join(path, name) in holding]
        own = {name for name, _ in module.named_parameters(recurse=False)}
        wrapped = _wrapped_children(module)
        for name, child in kids:
            child_path = _join(path, name)
            if child_path not in modules:  # a shared module, listed under its first path
                continue
            others = {n for n, _ in kids if n != name} | own
            inner = {n for n, _ in child.named_children()} | {n for n, _ in child.named_parameters(recurse=False)}
            transparent = name in wrapped and not (inner & others)
            clean_path[child_path] = clean_path[path] if transparent else _join(clean_path[path], name)
        if _is_block_container(module, [child for _, child in kids]):
            blocks.update(_join(path, name) for name, _ in kids)

    clean_blocks = {clean_path[b] for b in blocks if b in clean_path}
    contains_block: set[str] = set()
    for b in clean_blocks:
        parts = b.split(".")
        contains_block.update(".".join(parts[:k]) for k in range(0, len(parts)))

    clean_names, layers = [], []
    for (name, _), owner in zip(named, owners):
        leaf = name.rpartition(".")[2]
        owner_clean = clean_path.get(owner, owner)
        clean = _join(owner_clean, leaf)
        clean_names.append(clean)
        layers.append(_layer_of(owner_clean, clean, clean_blocks, contains_block))
    return ParameterTree(
        names=tuple(n for n, _ in named),
        clean=tuple(clean_names),
        layers=tuple(layers),
        trainable=tuple(p.requires_grad for _, p in named),
    )


def _is_block_container(module: nn.Module, kids: Sequence[nn.Module]) -> bool:
    """A ModuleList with parameters, or a Sequential of >= 2 composite same-typed modules with parameters."""
    if isinstance(module, nn.ModuleList):
        return bool(kids)
    if isinstance(module, nn.Sequential):
        named = dict(module.named_children())
        return (
            len(kids) >= 2
            and all(name.isdigit() for name in named)
            and len({type(k) for k in kids}) == 1
            and all(any(True for _ in k.children()) for k in kids)
        )
    return False


def _layer_of(owner: str, clean: str, blocks: set[str], contains_block: set[str]) -> str:
    parts = owner.split(".") if owner else []
    for k in range(1, len(parts) + 1):  # the outermost block around the parameter
        prefix = ".".join(parts[:k])
        if prefix in blocks:
            return prefix
    for k in range(1, len(parts) + 1):  # else the shortest module prefix that holds no block
        prefix = ".".join(parts[:k])
        if prefix not in contains_block:
            return prefix
    return clean  # registered on a module that contains blocks (or on the root)


def layer_groups(model: nn.Module) -> dict[str, str]:
    """``{name in model.named_parameters(): its "layer" group}``."""
    tree = parameter_tree(model)
    return dict(zip(tree.names, tree.layers))


def group_names(tree: ParameterTree, group_by: GroupBy = "layer") -> list[str]:
    """The group of every parameter of ``tree`` (same order)."""
    if callable(group_by):
        return [str(group_by(n)) for n in tree.clean]
    if group_by == "layer":
        return list(tree.layers)
    if group_by == "module":
        return [n.rpartition(".")[0] or n for n in tree.clean]
    if group_by == "parameter":
        return list(tree.clean)
    raise ValueError(f"group_by must be one of {GROUP_BY_CHOICES} or a callable name -> group, got {group_by!r}")


def matches(name: str, clean: str, include: Sequence[str] | None, exclude: Sequence[str] | None) -> bool:
    """Whether a parameter is kept: it matches one ``include`` glob (all kept if None) and no ``exclude`` glob.

    Globs use :mod:`fnmatch` (``*`` also matches dots), e.g. ``"bert.encoder.*"`` or
    ``"*.bias"``, against the parameter's name either as ``named_parameters()`` gives it or
    without wrapper prefixes.
    """

    def hit(patterns: Sequence[str]) -> bool:
        return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(clean, p) for p in patterns)

    return (include is None or hit(include)) and not (exclude and hit(exclude))


@dataclass(frozen=True)
class Grouping:
    """The selected parameters (named as ``named_parameters()`` does), their group index, the groups in model order."""

    names: tuple[str, ...]
    group_of: tuple[int, ...]
    groups: tuple[str, ...]


def build_grouping(
    model: nn.Module | ParameterTree,
    group_by: GroupBy = "layer",
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    *,
    trainable_only: bool = True,
) -> Grouping:
    """Select (trainable, ``include``, not ``exclude``) and group the parameters of ``model``.

    Groups are computed on the whole model (so ``"layer"`` sees its structure) and then filtered.
    """
    tree = model if isinstance(model, ParameterTree) else parameter_tree(model)
    all_groups = group_names(tree, group_by)
    order: dict[str, int] = {}
    names, group_of = [], []
    for i, (name, clean) in enumerate(zip(tree.names, tree.clean)):
        if trainable_only and not tree.trainable[i]:
            continue
        if not matches(name, clean, include, exclude):
            continue
        names.append(name)
        group_of.append(order.setdefault(all_groups[i], len(order)))
    return Grouping(tuple(names), tuple(group_of), tuple(order))


def parameters_of(model: nn.Module, grouping: Grouping) -> list[torch.nn.Parameter]:
    """The parameters ``grouping`` selected, in its order."""
    by_name = dict(model.named_parameters())
    return [by_name[n] for n in grouping.names]
