from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from gaitheat.config import ConfigError, apply_overrides, dump_config, from_dict, load_config, to_dict
from gaitheat.experiment import ExperimentConfig


@dataclass(frozen=True)
class Inner:
    rate: float = 0.1
    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    maybe: int | None = None
    groups: tuple[tuple[int, ...], ...] = ((0, 1), (2,))


def test_defaults_and_nested_values() -> None:
    cfg = from_dict(Outer, {"inner": {"rate": 1, "sizes": [3, 4, 5]}, "groups": [[1], [2, 3]]})
    assert cfg.inner.rate == 1.0 and isinstance(cfg.inner.rate, float)
    assert cfg.inner.sizes == (3, 4, 5)
    assert cfg.groups == ((1,), (2, 3))
    assert cfg.name == "x" and cfg.maybe is None


def test_unknown_key_names_dotted_path_and_nearest() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'inner\.rat'; did you mean 'rate'\?"):
        from_dict(Outer, {"inner": {"rat": 0.5}})
    with pytest.raises(ConfigError, match=r"unknown key 'innr'; did you mean 'inner'\?"):
        from_dict(Outer, {"innr": {}})


@pytest.mark.parametrize(("data", "message"), [
    ({"inner": {"rate": "fast"}}, r"inner\.rate: expected a number"),
    ({"inner": {"mode": "c"}}, r"inner\.mode: 'c' is not one of \['a', 'b'\]"),
    ({"maybe": 1.5}, r"maybe"),
    ({"inner": {"sizes": [1, "two"]}}, r"inner\.sizes\[1\]: expected an integer"),
    ({"inner": 3}, r"inner: expected a mapping"),
    ({"name": True}, r"name: expected a string"),
])
def test_type_errors(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


def test_overrides_parse_yaml_values() -> None:
    data = apply_overrides({"inner": {"rate": 0.1}}, ["inner.rate=0.5", "inner.sizes=[7, 8]", "name=hello"])
    cfg = from_dict(Outer, data)
    assert cfg.inner.rate == 0.5 and cfg.inner.sizes == (7, 8) and cfg.name == "hello"
    with pytest.raises(ConfigError, match="not of the form"):
        apply_overrides({}, ["inner.rate"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])


def test_load_yaml_file_with_overrides_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  lr: 0.05\nmodel:\n  widths: [8, 16, 32, 64]\n")
    cfg = load_config(ExperimentConfig, path, ["train.steps=10"])
    assert cfg.train.lr == 0.05 and cfg.train.steps == 10 and cfg.model.widths == (8, 16, 32, 64)
    again = from_dict(ExperimentConfig, to_dict(cfg))
    assert again == cfg
    (tmp_path / "dump.yaml").write_text(dump_config(cfg))
    assert load_config(ExperimentConfig, tmp_path / "dump.yaml") == cfg


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(ExperimentConfig, bad)
    with pytest.raises(ConfigError, match="neither a file nor a shipped config"):
        load_config(ExperimentConfig, tmp_path / "absent.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(ExperimentConfig, listing)


def test_configs_are_frozen() -> None:
    cfg = from_dict(Outer, {})
    with pytest.raises(AttributeError):
        cfg.name = "y"  # type: ignore[misc]


def test_overrides_keep_mapping_order() -> None:
    data = apply_overrides({"probes": {"zeta": [1], "alpha": [2]}}, ["probes.mid=[3]"])
    assert list(data["probes"]) == ["zeta", "alpha", "mid"]


@pytest.mark.parametrize(("typed", "lr"), [
    ("1e-3", 1e-3), ("1E-3", 1e-3), ("5.e-4", 5e-4), ("1.0e3", 1000.0), (".5", 0.5), ("2", 2.0),
    ("-3.5e+2", -350.0), ("1_000.5", 1000.5), ("'1e-3'", 1e-3),
])
def test_every_number_a_person_types_is_a_float(typed: str, lr: float) -> None:
    # YAML 1.1 reads 1e-3, 1E-3, 5.e-4 and 1.0e3 as strings (a float needs a dot and a signed exponent)
    cfg = load_config(ExperimentConfig, "cpu-small", [f"train.lr={typed}"])
    assert cfg.train.lr == lr and type(cfg.train.lr) is float


def test_numbers_in_a_yaml_file_too(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  lr: 1e-3\n  steps: 1e4\n")
    cfg = load_config(ExperimentConfig, path)
    assert cfg.train.lr == 0.001 and cfg.train.steps == 10000 and type(cfg.train.steps) is int


@pytest.mark.parametrize(("override", "message"), [
    ("train.steps=2.5", "expected an integer"),
    ("train.steps=1e-3", "expected an integer"),
    ("train.lr=.nan", "not a number"),
    ("train.lr=1e-3x", "expected a number"),
    ("train.lr=fast", "expected a number"),
])
def test_what_is_not_a_number_stays_an_error(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(ExperimentConfig, "cpu-small", [override])
