"""Configs as plain data: JSON round trips and the command line's ``--set key=value``."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar

from genjax_models.configs.checks import ConfigError
from genjax_models.configs.presets import PRESETS, preset_values

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

C = TypeVar("C", bound="DataclassInstance")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain-JSON dict of a (possibly nested) config dataclass."""
    return dataclasses.asdict(config)


def from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Builds ``cls`` from ``values``; unknown keys raise :class:`ConfigError` listing valid ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{cls.__name__} has no field {unknown[0]!r}: valid fields are {', '.join(sorted(names))}"
        )
    return cls(**values)


def override(config: C, assignments: list[str] | tuple[str, ...]) -> C:
    """Applies ``key=value`` strings (from ``--set``) to ``config``, parsing values by field type.

    Example: ``override(GANConfig(), ["base_width=32", "loss=hinge"])``. ``preset=NAME`` (configs
    with presets, :mod:`genjax_models.configs.presets`) fills in every field not set otherwise.
    """
    fields = {f.name: f for f in dataclasses.fields(config)}
    changes: dict[str, Any] = {}
    preset = None
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} is not key=value (e.g. --set base_width=32)")
        if key == "preset":
            preset = raw
            continue
        if key not in fields:
            raise ConfigError(
                f"{type(config).__name__} has no field {key!r}: valid fields are "
                f"{', '.join(sorted(fields))}"
            )
        current = getattr(config, key)
        try:
            if isinstance(current, bool):
                value: Any = {"true": True, "false": False}[raw.lower()]
            elif isinstance(current, int):
                value = int(raw)
            elif isinstance(current, float):
                value = float(raw)
            else:
                value = raw
        except (ValueError, KeyError):
            raise ConfigError(
                f"--set {key}={raw!r}: expected a value of type {type(current).__name__}"
            ) from None
        changes[key] = value
    if preset is None:
        return dataclasses.replace(config, **changes)
    chosen = preset_values(dataclasses.replace(config, **changes), preset)
    return dataclasses.replace(config, **{**chosen, **changes})


def sets_field(assignments: list[str] | tuple[str, ...], name: str) -> bool:
    """Whether the ``key=value`` strings of ``--set`` give field ``name`` a value."""
    return any(item.partition("=")[0].strip() == name for item in assignments)


def override_all(configs: tuple[Any, ...], assignments: list[str] | tuple[str, ...]) -> tuple:
    """:func:`override` for several configs at once: each ``key=value`` goes to the config that
    has field ``key`` (the first one, if several do; ``preset`` goes to the first config with
    presets); unknown keys list every valid field."""
    routed: list[list[str]] = [[] for _ in configs]
    for item in assignments:
        key = item.partition("=")[0]
        for index, config in enumerate(configs):
            names = {f.name for f in dataclasses.fields(config)}
            if type(config).__name__ in PRESETS:
                names.add("preset")
            if key in names:
                routed[index].append(item)
                break
        else:
            names = sorted({f.name for c in configs for f in dataclasses.fields(c)})
            kinds = "/".join(type(c).__name__ for c in configs)
            raise ConfigError(f"{kinds} have no field {key!r}: valid fields are {', '.join(names)}")
    return tuple(override(c, items) for c, items in zip(configs, routed, strict=True))


def first_difference(first: Any, other: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first field that differs between two JSON values (nested dicts compared key by key,
    in sorted order): ``(dotted path, first's value, other's value)``, or None when equal."""
    if isinstance(first, dict) and isinstance(other, dict):
        for key in sorted(set(first) | set(other)):
            found = first_difference(first.get(key), other.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if first == other else (prefix.rstrip("."), first, other)
