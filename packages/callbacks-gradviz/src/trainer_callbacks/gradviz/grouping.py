"""Which group each parameter's gradient norm is reported under.

``group_by="layer"`` (the default) turns the parameter names of a model into the units a
person reads a training run by:

* a parameter inside a repeated block (any path component that is a number, i.e. an
  index into an ``nn.ModuleList`` / ``nn.Sequential``) belongs to the prefix up to and
  including the FIRST numeric component: ``bert.encoder.layer.3.attention.self.query.weight``
  -> ``bert.encoder.layer.3``; ``model.layers.0.mlp.up_proj.weight`` -> ``model.layers.0``;
* any other parameter belongs to the shortest prefix of its module path that is not an
  ancestor of a repeated block: ``bert.embeddings.word_embeddings.weight`` ->
  ``bert.embeddings`` (``bert`` contains ``bert.encoder.layer.*``), ``bert.pooler.dense.bias``
  -> ``bert.pooler``, ``classifier.weight`` -> ``classifier``, ``model.norm.weight`` ->
  ``model.norm``, ``lm_head.weight`` -> ``lm_head``;
* a parameter registered directly on the root module is its own group.

``"module"`` groups by the module that owns the parameter (its name without the last
component), ``"parameter"`` by the parameter name, and a callable ``name -> group`` does
whatever it returns. Wrapper prefixes (``module.`` of DDP, ``_orig_mod.`` of
``torch.compile``) are ignored. Groups are listed in model order (order of first
appearance in ``named_parameters()``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

GroupBy = str | Callable[[str], str]

_WRAPPER_PREFIXES = ("module", "_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module")
GROUP_BY_CHOICES = ("layer", "module", "parameter")


def clean_name(name: str) -> str:
    """``name`` without the components that wrappers (DDP, torch.compile, FSDP1, checkpointing) insert."""
    parts = [p for p in name.split(".") if p not in _WRAPPER_PREFIXES]
    return ".".join(parts) if parts else name


def _layer_prefix(parts: Sequence[str]) -> tuple[str, ...] | None:
    for i, part in enumerate(parts):
        if part.isdigit():
            return tuple(parts[: i + 1])
    return None


def layer_groups(names: Sequence[str]) -> list[str]:
    """The ``"layer"`` group of every name in ``names`` (see the module docstring)."""
    split = [clean_name(n).split(".") for n in names]
    ancestors: set[tuple[str, ...]] = set()
    for parts in split:
        prefix = _layer_prefix(parts[:-1])
        if prefix is not None:
            for j in range(1, len(prefix)):
                ancestors.add(prefix[:j])
    groups = []
    for parts in split:
        module_path = parts[:-1]
        prefix = _layer_prefix(module_path)
        if prefix is not None:
            groups.append(".".join(prefix))
            continue
        if not module_path:
            groups.append(".".join(parts))
            continue
        chosen = module_path
        for j in range(1, len(module_path) + 1):
            if tuple(module_path[:j]) not in ancestors:
                chosen = module_path[:j]
                break
        groups.append(".".join(chosen))
    return groups


def group_names(names: Sequence[str], group_by: GroupBy = "layer") -> list[str]:
    """The group of every parameter name (same order as ``names``)."""
    if callable(group_by):
        return [str(group_by(n)) for n in names]
    if group_by == "layer":
        return layer_groups(names)
    if group_by == "module":
        out = []
        for n in names:
            parts = clean_name(n).split(".")
            out.append(".".join(parts[:-1]) if len(parts) > 1 else parts[0])
        return out
    if group_by == "parameter":
        return [clean_name(n) for n in names]
    raise ValueError(f"group_by must be one of {GROUP_BY_CHOICES} or a callable name -> group, got {group_by!r}")


def select(names: Iterable[str], include: Sequence[str] | None, exclude: Sequence[str] | None) -> list[bool]:
    """Whether each name is kept: it matches one ``include`` glob (all kept if None) and no ``exclude`` glob.

    Globs use :mod:`fnmatch` on the cleaned parameter name (``*`` also matches dots), e.g.
    ``"bert.encoder.*"`` or ``"*.bias"``.
    """
    keep = []
    for raw in names:
        name = clean_name(raw)
        ok = include is None or any(fnmatch.fnmatchcase(name, pat) for pat in include)
        if ok and exclude:
            ok = not any(fnmatch.fnmatchcase(name, pat) for pat in exclude)
        keep.append(ok)
    return keep


@dataclass(frozen=True)
class Grouping:
    """The selected parameters' names, their group index, and the group names in model order."""

    names: tuple[str, ...]
    group_of: tuple[int, ...]
    groups: tuple[str, ...]


def build_grouping(
    names: Sequence[str],
    group_by: GroupBy = "layer",
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> tuple[list[int], Grouping]:
    """Select and group ``names``; returns the positions kept in ``names`` and the :class:`Grouping`.

    Groups are computed on ALL names (so ``"layer"`` sees the whole model) and then filtered.
    """
    all_groups = group_names(names, group_by)
    keep = select(names, include, exclude)
    positions = [i for i, k in enumerate(keep) if k]
    order: dict[str, int] = {}
    group_of = []
    for i in positions:
        group_of.append(order.setdefault(all_groups[i], len(order)))
    return positions, Grouping(tuple(names[i] for i in positions), tuple(group_of), tuple(order))
