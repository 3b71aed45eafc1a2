"""Merging mappings and ``key.sub=value`` overrides into the nested config dataclasses.

Generic over any dataclass tree (dynatss.config's :class:`Config` in practice): every value is
checked against its field's annotation (numbers in any float notation, also ``1e-4``, which YAML
reads as a string; literals; optional values; lists), and an unknown key fails in one line with a
"did you mean" suggestion, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal

import yaml

from dynatss.errors import DynatssError

# Keys renamed since configs were saved with runs and checkpoints: the old name is read as the new
# one, so earlier runs still load. model.box_weights named the box coder's (wx, wy, ww, wh), beside
# the unrelated loss.box_weight (issue 19).
RENAMED_KEYS = {"model.box_weights": "model.box_coder_weights"}


def _suggest(key: str, choices: list[str], elsewhere: list[str] = ()) -> str:
    """A "did you mean" hint: a close spelling, a name containing ``key`` as a word
    (``lr`` -> ``base_lr``), or the same name in another section (``solver.seed`` -> ``train.seed``)."""
    def word_of(name: str) -> bool:
        return bool(key) and key.lower() in name.rsplit(".", 1)[-1].lower().split("_")

    close = difflib.get_close_matches(key, choices, n=1)
    for candidates in (
        [c for c in choices if word_of(c)],
        [d for d in elsewhere if d.rsplit(".", 1)[-1] == key],
        [d for d in elsewhere if word_of(d)],
        difflib.get_close_matches(key, choices, n=1, cutoff=0.5),
    ):
        close = close or candidates
    return f" (did you mean '{close[0]}'?)" if close else ""


def _to_number(value: Any, where: str, kind: str) -> float:
    """A number from YAML: ints, floats and strings in any float notation (``1e-4``, ``.5``, ``1_000``)."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise DynatssError(f"{where}: expected {kind}, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DynatssError(f"{where}: expected {kind}, got {value!r}")
    if not math.isfinite(value):
        raise DynatssError(f"{where}: expected a finite number, got {value!r}")
    return value


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a dataclass field annotation; convert ints to floats etc."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise DynatssError(f"{where}: {value!r} is not one of {list(args)}{_suggest(str(value), list(map(str, args)))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except DynatssError as error:
                errors.append(str(error))
        raise DynatssError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise DynatssError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if annotation is float:
        return float(_to_number(value, where, "a number"))
    if annotation is int:
        number = _to_number(value, where, "an integer")
        if isinstance(number, float) and not number.is_integer():
            raise DynatssError(f"{where}: expected an integer, got {value!r}")
        return int(number)
    if annotation is bool:
        if not isinstance(value, bool):
            raise DynatssError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise DynatssError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported annotation {annotation!r}")


def _all_keys(instance: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            keys += _all_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def merge_into(instance: Any, updates: dict[str, Any], where: str = "", root: Any = None) -> None:
    """Set the values of the nested mapping ``updates`` on the dataclass ``instance`` (in place),
    each checked against its field's type; an unknown key fails with a suggestion."""
    root = instance if root is None else root
    hints = typing.get_type_hints(type(instance))
    names = [f.name for f in dataclasses.fields(instance)]
    for key, value in updates.items():
        key = str(key)
        path = f"{where}.{key}" if where else key
        if path in RENAMED_KEYS:
            path = RENAMED_KEYS[path]
            key = path.rsplit(".", 1)[-1]
        if key not in names:
            elsewhere = [k for k in _all_keys(root) if not k.startswith(f"{where}.")]
            raise DynatssError(f"unknown config key '{path}'{_suggest(key, names, elsewhere)}")
        current = getattr(instance, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise DynatssError(f"{path}: expected a mapping, got {value!r}")
            merge_into(current, value, path, root)
        else:
            setattr(instance, key, _coerce(value, hints[key], path))


def parse_override(text: str) -> dict[str, Any]:
    """``"a.b=value"`` -> ``{"a": {"b": value}}`` with the value read as YAML."""
    if "=" not in text:
        raise DynatssError(f"override '{text}' must look like key.sub=value")
    dotted, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or "parse error"
        raise DynatssError(f"override '{text}': the value is not valid YAML ({problem})") from None
    nested: dict[str, Any] = {}
    node = nested
    keys = dotted.strip().split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return nested
