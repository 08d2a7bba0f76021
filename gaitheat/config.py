"""Strict configs: frozen dataclasses loaded from YAML, with ``--set a.b=c`` overrides.

Every stage owns one frozen dataclass (``CropConfig``, ``QualityConfig``, ``ModelConfig`` ...).
This module only knows how to turn plain data into such a dataclass and back:

* unknown keys are an error naming the dotted path and the nearest valid key;
* values are checked against the field's type (``int``, ``float``, ``str``, ``bool``, ``Literal``,
  ``Optional``, ``tuple``/``list``/``dict`` of those, and nested dataclasses);
* overrides ``a.b=c`` parse ``c`` as YAML, so ``--set train.lr=0.01`` gives a float and
  ``--set model.groups=[[0,1],[2,3]]`` a nested list;
* numbers are read as a person types them, in files and overrides alike: YAML 1.1 reads ``1e-3``,
  ``1E5`` and ``5.e-4`` as strings (its floats need a dot and a signed exponent), so a ``float``
  field also takes any decimal number written as a string, and an ``int`` field takes one that is
  a whole number (``1e4`` steps, ``2000.0``); ``nan`` and fractions for integers stay errors;
* a field whose metadata holds ``config_class`` is polymorphic: ``config_class(mapping)`` picks the
  dataclass (a subclass of the field's type) the mapping loads into, e.g. the ``model`` section by
  its ``name``; an unknown name is an error naming the nearest known one;
* a dataclass with a ``__migrate__(data) -> data`` static method gets its plain data passed through
  it first, so older layouts (moved keys) still load.

The library below ``build_*`` functions never sees a config object: configs are converted to
constructor arguments at the edge (style §4, §5).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not match the config's dataclasses."""


def yaml_error(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: where, and what (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def _nearest(name: str, valid: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.0)
    return f"; did you mean '{match[0]}'?" if match else ""


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


# a decimal number as people write it: 3, -2.5, .5, 5., 1e-3, 1E+05, 1_000.5
_NUMBER = re.compile(r"[+-]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?")


def _as_number(value: Any) -> Any:
    """``value`` as an int or float when it is a number, or a string that spells a decimal number."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        text = value.strip()
        try:
            return int(text) if text.lstrip("+-").replace("_", "").isdigit() else float(text)
        except ValueError:  # misplaced underscores ("1__0"): not a number after all
            return value
    return value


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against type ``tp`` and convert containers (lists -> tuples, dicts -> dataclasses)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path or '<root>'}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, path)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{path}: {value!r} does not match {_type_name(tp)} ({'; '.join(errors)})")
    if origin is typing.Literal:
        allowed = get_args(tp)
        if value not in allowed:
            hint = _nearest(str(value), map(str, allowed))
            raise ConfigError(f"{path}: {value!r} is not one of {list(allowed)}{hint}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
            items = [_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))]
        else:
            item_tp = args[0] if args else Any
            items = [_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        ktp, vtp = get_args(tp) or (Any, Any)
        return {_convert(k, ktp, path): _convert(v, vtp, _join(path, str(k))) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        number = _as_number(value)
        if isinstance(number, float) and number.is_integer() and abs(number) <= 2**53:
            number = int(number)  # 1e4, 2000.0: a whole number, exactly
        if isinstance(number, bool) or not isinstance(number, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return number
    if tp is float:
        number = _as_number(value)
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if number != number:
            raise ConfigError(f"{path}: expected a number, got {value!r} (not a number)")
        return float(number)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{path}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], path: str = "") -> T:
    """Build dataclass ``cls`` from plain data, strictly.

    Args:
        cls: a (frozen) dataclass type.
        data: mapping of field names to values; missing fields take their defaults.
        path: dotted prefix used in error messages.
    Raises:
        ConfigError: on an unknown key (naming the nearest valid one), a missing required field or a
            value of the wrong type.
    """
    assert dataclasses.is_dataclass(cls), cls
    migrate = getattr(cls, "__migrate__", None)
    if migrate is not None:
        try:
            data = migrate(data)
        except ValueError as exc:
            raise ConfigError(f"{path or cls.__name__}: {exc}") from exc
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise ConfigError(f"unknown key '{_join(path, str(key))}'{_nearest(str(key), fields)}")
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            tp = hints[name]
            choose = field.metadata.get("config_class")
            if choose is not None and isinstance(data[name], Mapping):
                tp = _chosen_class(choose, data[name], tp, _join(path, name))
            kwargs[name] = _convert(data[name], tp, _join(path, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key '{_join(path, name)}'")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path or cls.__name__}: {exc}") from exc


def _chosen_class(choose: Any, value: Mapping[str, Any], base: Any, path: str) -> Any:
    """The dataclass a polymorphic field's mapping loads into (see the module docstring)."""
    try:
        chosen = choose(value)
    except KeyError as exc:
        raise ConfigError(f"{path}: {exc.args[0] if exc.args else exc}") from None
    if not (isinstance(chosen, type) and isinstance(base, type) and issubclass(chosen, base)):
        raise ConfigError(f"{path}: {chosen!r} is not a {_type_name(base)}")
    return chosen


def to_dict(obj: Any) -> Any:
    """Plain-data (YAML/JSON-ready) form of a config dataclass; tuples become lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with ``a.b=c`` overrides applied (``c`` is parsed as YAML)."""
    out = copy.deepcopy(dict(data))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key.path=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override '{item}' has an empty key")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
            node = child
        try:
            # `key=` is an empty string, as typed (YAML alone would read null)
            node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override '{item}': value is not valid YAML ({yaml_error(exc)})") from exc
    return out


def load_config(cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Load ``cls`` from a YAML file (or defaults when ``path`` is None) plus overrides.

    A path that is not a file is looked up among the configs shipped in ``gaitheat/configs``
    (``casia-b`` finds ``gaitheat/configs/casia-b.yaml``).
    """
    data: dict[str, Any] = {}
    if path is not None:
        file = resolve_config_path(path)
        try:
            loaded = yaml.safe_load(file.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML ({yaml_error(exc)})") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read it as a YAML file ({exc})") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: the top level must be a mapping")
        data = loaded
    data = apply_overrides(data, overrides)
    return from_dict(cls, data)


def resolve_config_path(path: str | Path) -> Path:
    """A config file path, or the name of a config shipped with the package."""
    file = Path(path)
    if file.is_file():
        return file
    shipped = Path(__file__).parent / "configs"
    for candidate in (shipped / f"{path}.yaml", shipped / str(path)):
        if candidate.is_file():
            return candidate
    names = sorted(p.stem for p in shipped.glob("*.yaml"))
    raise ConfigError(f"config '{path}' is neither a file nor a shipped config {names}{_nearest(str(path), names)}")


def dump_config(obj: Any) -> str:
    """YAML text of a config dataclass (what checkpoints and reports record)."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False)
