"""``--set KEY=VALUE`` for any nested dataclass config (the multi-view and single-view configs share it).

A key is a dotted path of fields (``pass1.iterations``, ``implicit.widths``); the value is parsed by the
field's type hint: ``bool`` (``true/false/yes/no/on/off/1/0``), ``int``, ``float``, ``str``, ``tuple[T, ...]``
(``8,16,32`` or ``[8,16,32]``, each element converted to ``T``; an empty value is the empty tuple), and any
other generic type as JSON.

Example:
    >>> from unrender.singleview.train_config import preset
    >>> cfg = apply_overrides(preset("fast", "implicit"), ["lr=0.5", "implicit.widths=8,16"])
    >>> cfg.lr, cfg.implicit.widths
    (0.5, (8, 16))
"""

from __future__ import annotations

import copy
import dataclasses
import json
import typing

from .errors import DataError, InputError

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def convert_value(text: str, kind, key: str):
    """``text`` as a value of type ``kind`` (module docstring); an :class:`InputError` naming ``key`` if it is not.

    Example:
        >>> convert_value("0.25,0.75", tuple[float, ...], "mix")
        (0.25, 0.75)
    """
    try:
        if kind is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(text)
        if kind in (int, float, str):
            return kind(text)
        if typing.get_origin(kind) is tuple:
            element = (typing.get_args(kind) or (str,))[0]
            items = json.loads(text if text.startswith("[") else f"[{text}]")
            return tuple(convert_value(str(x), element, key) for x in items)
        if typing.get_origin(kind) is not None:
            return json.loads(text)
    except (ValueError, TypeError, json.JSONDecodeError):
        pass
    raise InputError(f"--set {key}={text}: expected a value of type {getattr(kind, '__name__', kind)}.")


def apply_overrides(cfg, items):
    """Apply ``["key=value", "section.key=value", ...]`` to a deep copy of the dataclass ``cfg`` and return it;
    an unknown key, a key naming a whole section, or a bad value raises :class:`InputError`."""
    cfg = copy.deepcopy(cfg)
    sections = ", ".join(f.name for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name)))
    for item in items or []:
        if "=" not in item:
            raise InputError(f"--set expects KEY=VALUE; got {item!r}.")
        key, text = (s.strip() for s in item.split("=", 1))
        target, parts = cfg, key.split(".")
        for part in parts[:-1]:
            if not dataclasses.is_dataclass(getattr(target, part, None)):
                raise InputError(f"--set {key}: {part!r} is not a section; sections are {sections}.")
            target = getattr(target, part)
        hints = typing.get_type_hints(type(target))
        name = parts[-1]
        if name not in hints or dataclasses.is_dataclass(getattr(target, name)):
            known = ", ".join(f.name for f in dataclasses.fields(target))
            raise InputError(f"--set {key}: unknown field {name!r}; known: {known}.")
        setattr(target, name, convert_value(text, hints[name], key))
    return cfg


def dataclass_from_dict(cls, d: dict, source: str):
    """Rebuild the (nested) dataclass ``cls`` from its :func:`dataclasses.asdict` form read back from JSON
    (lists become tuples where the field is a tuple); unknown fields raise a :class:`DataError` naming ``source``.

    Example:
        >>> from unrender.singleview.train_config import preset
        >>> cfg = preset("fast")
        >>> dataclass_from_dict(type(cfg), json.loads(json.dumps(dataclasses.asdict(cfg))), "x") == cfg
        True
    """
    if not isinstance(d, dict):
        raise DataError(f"{source} does not hold a config object; start a new run.")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise DataError(f"{source} has unknown config fields {sorted(unknown)}; it was written by another version "
                        f"of unrender -- start a new run.")
    values = {}
    for key, value in d.items():
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            value = dataclass_from_dict(kind, value, source)
        elif typing.get_origin(kind) is tuple:
            value = tuple(value)
        values[key] = value
    try:
        return cls(**values)
    except TypeError as exc:
        raise DataError(f"{source} is not a {cls.__name__} ({exc}); start a new run.") from None
