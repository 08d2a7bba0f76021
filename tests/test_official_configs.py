"""The shipped casia-b, ccpg and sustech1k configs are the official settings: every value is read from the spec.

Each config key has one row: either a rule that finds the value in the text of a cited section of
the spec (``tests/data/spec/gaitheat_spec.md``, a copy of ``../shared/spec/gaitheat_spec.md``) and
parses it from there, or an implementation setting that the spec does not fix, pinned here with the
reason. A key in a shipped YAML without a row fails, and so does any value that drifts from its row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from gaitheat.config import load_config, resolve_config_path, to_dict
from gaitheat.experiment import ExperimentConfig

SPEC = Path(__file__).parent / "data" / "spec" / "gaitheat_spec.md"
DATASETS = ("casia-b", "ccpg", "sustech1k")
Value = Callable[[re.Match[str], str], Any]  # (match in the section, dataset) -> expected config value


@cache
def section(number: str) -> str:
    """The text of spec section ``number`` ("4.2", or "5" with its subsections), heading included."""
    text = SPEC.read_text(encoding="utf-8")
    level = "###" if "." in number else "##"
    head = re.search(rf"^{level} {re.escape(number)}[. ]", text, re.M)
    assert head is not None, f"spec section {number} not found"
    stop = re.compile(r"^#{2,3} " if level == "###" else r"^## ", re.M).search(text, head.end())
    return text[head.start(): stop.start() if stop else len(text)]


def ints(m: re.Match[str], _: str) -> tuple[int, ...]:
    return tuple(int(g) for g in m.groups())


def first_int(m: re.Match[str], _: str) -> int:
    return int(m.group(1).replace(",", ""))


def first_float(m: re.Match[str], _: str) -> float:
    return float(m.group(1))


def per_dataset(casia_b: int, ccpg: int, sustech1k: int) -> Value:
    """A value that differs per dataset: the match groups named by position for each."""
    index = {"casia-b": casia_b, "ccpg": ccpg, "sustech1k": sustech1k}
    return lambda m, dataset: m.group(index[dataset])


def constant(value: Any) -> Value:
    """The spec states the setting in words; the row's pattern is the statement."""
    return lambda m, dataset: value


# key -> (spec section, pattern found in that section, value from the match)
SPEC_RULES: dict[str, tuple[str, str, Value]] = {
    "data.dataset": ("5", r"### 5\.1 (CASIA-B).*### 5\.2 (CCPG).*### 5\.3 (SUSTech1K)",
                     lambda m, d: m.group({"casia-b": 1, "ccpg": 2, "sustech1k": 3}[d]).lower()),
    "data.frames_train": ("2.2", r"`frames_num_fixed: (\d+)`", first_int),
    "data.frames_test_max": ("2.2", r"`frames_all_limit: (\d+)`", first_int),
    "data.batch_p": ("2.2", r"batch `\[P, K\] = \[(\d+), \d+\]`", first_int),
    "data.batch_k": ("2.2", r"batch `\[P, K\] = \[\d+, (\d+)\]`", first_int),
    "data.num_classes": ("4.2", r"`class_num (\d+)`\)[^\n]*\n.*?CCPG: (\d+) training ids; SUSTech1K: (\d+)",
                         lambda m, d: int(per_dataset(1, 2, 3)(m, d))),
    "model.name": ("0", r"(GaitHeat)", constant("gaitheat")),
    "model.widths": ("3.3", r"`channels \[(\d+), (\d+), (\d+), (\d+)\]`", ints),
    "model.strides": ("3.3", r"`strides \[(\d+), (\d+), (\d+), (\d+)\]`", ints),
    "model.parts": ("3.5", r"`bin_num: \[(\d+)\]`", first_int),
    "model.embed_dim": ("3.5", r"\*\*SeparateFCs\*\* \(\d+ parts, \d+→(\d+)", first_int),
    # the release reads channels 0 and 1 (nose, left eye); the spec's recommended K = 2 joint groups
    "model.groups": ("3.2", r"joints \{(\d+)–(\d+)\}.*?over \{(\d+)–(\d+)\}",
                     lambda m, d: (tuple(range(int(m[1]), int(m[2]) + 1)), tuple(range(int(m[3]), int(m[4]) + 1)))),
    "model.align": ("3.1", r"(PGHA) inside the forward", constant(True)),
    "model.align_mode": ("3.1", r"reproduction should do two passes", constant("two_pass")),
    "model.align_pixels": ("2.3", r"N treats pixel index i as the \*left edge\* coordinate", constant("edge")),
    "model.gamma_deg": ("2.3", r"\*\*γ = (\d+)° for CASIA-B and SUSTech1K and (\d+)° for CCPG\*\*",
                        lambda m, d: float(per_dataset(1, 2, 1)(m, d))),
    # an upright frame keeps its identity matrices when a uniform draw is > 0.2: probability 0.8
    "model.skip_prob": ("2.3", r"a uniform draw in \[0, 1\) is > ([\d.]+), both matrices are the \*\*identity",
                        lambda m, d: 1 - float(m[1])),
    "model.neck_to": ("2.3", r"\*\*P_align = \((\d+), (\d+)\)\*\*", lambda m, d: (float(m[1]), float(m[2]))),
    "model.fusion": ("3.4", r"a \*\*separate copy of ResNet stage i\*\*", constant(True)),
    "train.steps": ("4.2", r"\*\*([\d,]+) iterations\*\*", first_int),
    "train.lr": ("4.2", r"\*\*SGD, lr ([\d.]+),", first_float),
    "train.momentum": ("4.2", r"\*\*SGD, lr [\d.]+, momentum ([\d.]+),", first_float),
    "train.weight_decay": ("4.2", r"\*\*SGD, [^*]*weight decay ([\de.-]+)\*\*", first_float),
    "train.milestones": ("4.2", r"milestones \*\*(\d+)k, (\d+)k, (\d+)k\*\*",
                         lambda m, d: tuple(1000 * int(g) for g in m.groups())),
    "train.lr_gamma": ("4.2", r"milestones \*\*[^*]+\*\*, γ ([\d.]+)\.", first_float),
    "train.triplet_margin": ("4.1", r"TripletLoss, \*\*margin ([\d.]+)\*\*", first_float),
    "train.ce_scale": ("4.1", r"CrossEntropyLoss, \*\*scale (\d+)\*\*", first_float),
    "train.label_smoothing": ("4.1", r"\*\*Label smoothing is on by default \(ε = ([\d.]+)\)\*\*", first_float),
    "train.triplet_weights": ("4.1", r"Six terms, each with weight \*\*([\d.]+)\*\*",
                              lambda m, d: (float(m[1]),) * 3),
    "train.ce_weights": ("4.1", r"Six terms, each with weight \*\*([\d.]+)\*\*", lambda m, d: (float(m[1]),) * 3),
    "train.precision": ("4.2", r"\*\*AMP (fp16)\*\* with GradScaler", lambda m, d: m[1]),
    "train.seed": ("4.2", r"Seeds: `init_seeds\(rank\)`", constant(0)),  # rank 0's seed
    "train.checkpoint_every": ("4.2", r"Checkpoint every (\d+)k", lambda m, d: 1000 * int(m[1])),
    "train.sync_bn": ("4.2", r"\*\*SyncBN\*\* \(`sync_BN: true`\)", constant(True)),
    "eval.protocol": ("5", r"### 5\.1 (CASIA-B).*### 5\.2 (CCPG).*### 5\.3 (SUSTech1K)",
                      lambda m, d: m.group({"casia-b": 1, "ccpg": 2, "sustech1k": 3}[d]).lower()),
    "eval.distance": ("5", r"GaitHeat uses \*\*(euc)\*\*", lambda m, d: m[1]),
    "eval.precision": ("4.2", r"\*\*AMP (fp16)\*\* with GradScaler \(`enable_float16: true`\) in both training "
                              r"and test", lambda m, d: m[1]),
}

# key -> (value, why the spec does not fix it)
IMPLEMENTATION: dict[str, tuple[Any, str]] = {
    "data.root": ("", "the user's heatmap store (--data-root)"),
    "data.partition": ("", "the shipped partition of the dataset (checked against §5 below)"),
    "data.workers": (4, "DataLoader processes decoding the compressed store (the release's num_workers: 1 "
                        "reads pickles)"),
    "train.out": (None, "runs/<dataset>: where this run writes"),
    "train.keep_last": (3, "checkpoint files kept on disk"),
    "train.log_every": (50, "logging cadence"),
    "train.eval_every": (0, "the release tests after every checkpoint (with_test: true, §4.2); gaitheat "
                            "evaluates a checkpoint with `gaitheat evaluate`, so periodic evaluation is off"),
    "train.compile": (True, "torch.compile of the training step: same arithmetic, faster on CPU and GPU"),
    "eval.batch_size": (4, "sequences per forward pass per GPU; the release's 16 is split over its ranks (§2.2) "
                           "and the result does not depend on it"),
}


# loss settings that the models/inputs refactor moves from `train` to `model`: the same rows either way
LOSS_KEYS = ("triplet_margin", "ce_scale", "label_smoothing", "triplet_weights", "ce_weights")


def row_key(key: str) -> str:
    """The row of a config key (``model.<loss key>`` and ``train.<loss key>`` share one)."""
    section, field = key.split(".", 1)
    return f"train.{field}" if section == "model" and field in LOSS_KEYS else key


def expected(key: str, dataset: str) -> Any:
    if key in IMPLEMENTATION:
        value = IMPLEMENTATION[key][0]
        return f"runs/{dataset}" if key == "train.out" else value
    number, pattern, value_of = SPEC_RULES[key]
    m = re.search(pattern, section(number), re.S)
    assert m is not None, f"{key}: /{pattern}/ not found in spec §{number}"
    return value_of(m, dataset)


def leaf_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k, v in data.items():
        path = f"{prefix}{k}"
        keys += leaf_keys(v, f"{path}.") if isinstance(v, dict) and v else [path]
    return keys


def value_at(cfg: ExperimentConfig, key: str) -> Any:
    section_name, field = key.split(".")
    section_obj = getattr(cfg, section_name)
    if field in LOSS_KEYS and not hasattr(section_obj, field):
        section_obj = cfg.model  # after the move of the loss settings into the model section
    return to_dict(getattr(section_obj, field))


def plain(value: Any) -> Any:
    """Tuples as lists, as ``to_dict`` gives them."""
    return [plain(v) for v in value] if isinstance(value, tuple | list) else value


def drift(cfg: ExperimentConfig, dataset: str) -> dict[str, tuple[Any, Any]]:
    """{key: (config value, spec value)} for every row the config does not match."""
    out = {}
    for key in sorted({*SPEC_RULES, *IMPLEMENTATION}):
        want, have = plain(expected(key, dataset)), value_at(cfg, key)
        if have != (pytest.approx(want) if isinstance(want, float) else want):
            out[key] = (have, want)
    return out


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_value_comes_from_the_spec(dataset: str) -> None:
    assert drift(load_config(ExperimentConfig, dataset), dataset) == {}


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_key_of_the_shipped_yaml_has_a_row(dataset: str) -> None:
    data = yaml.safe_load(resolve_config_path(dataset).read_text())
    unexplained = [k for k in leaf_keys(data) if row_key(k) not in SPEC_RULES and row_key(k) not in IMPLEMENTATION]
    assert unexplained == [], f"add a spec rule or an implementation row for {unexplained}"


@pytest.mark.parametrize(("override", "key"), [
    ("train.lr=0.05", "train.lr"), ("model.align_mode=composite", "model.align_mode"),
    ("model.align_pixels=centre", "model.align_pixels"), ("model.gamma_deg=20", "model.gamma_deg"),
    ("train.milestones=[20000,40000]", "train.milestones"), ("data.num_classes=73", "data.num_classes"),
    ("train.eval_every=100", "train.eval_every"),
])
def test_a_drifted_value_is_caught(override: str, key: str) -> None:
    assert list(drift(load_config(ExperimentConfig, "casia-b", [override]), "casia-b")) == [key]


def test_the_values_read_from_the_spec() -> None:
    """The parsing itself, on values known from the paper (a rule that parsed the wrong number fails here)."""
    assert expected("train.milestones", "ccpg") == (20000, 40000, 50000)
    assert expected("model.gamma_deg", "ccpg") == 20.0 and expected("model.gamma_deg", "sustech1k") == 5.0
    assert expected("data.num_classes", "sustech1k") == 250 and expected("train.steps", "casia-b") == 60000
    assert expected("model.skip_prob", "casia-b") == pytest.approx(0.8)
    assert expected("model.groups", "casia-b")[1] == (11, 12, 13, 14, 15, 16)


@pytest.mark.parametrize(("name", "pattern"), [
    ("CASIA-B", r"ids \*\*(\d+)–(\d+) train\*\* \((\d+) ids.*\*\*(\d+)–(\d+) test\*\* \((\d+) ids\)"),
    ("CCPG", r"ids \*\*(\d+)–(\d+) train\*\*, \*\*(\d+)–(\d+) test\*\*"),
    ("SUSTech1K", r"(\d+) train ids, (\d+) test ids"),
])
def test_shipped_partitions_match_the_spec(name: str, pattern: str) -> None:
    """§5's splits: first and last subject and counts of the partitions the protocols use."""
    shipped = json.loads((Path(__file__).parent.parent / "gaitheat" / "partitions" / f"{name}.json").read_text())
    m = re.search(pattern, section("5"), re.S)
    assert m is not None, name
    g = m.groups()
    if name == "CASIA-B":
        assert (shipped["TRAIN_SET"][0], shipped["TRAIN_SET"][-1], len(shipped["TRAIN_SET"])) == (g[0], g[1], int(g[2]))
        assert (shipped["TEST_SET"][0], shipped["TEST_SET"][-1], len(shipped["TEST_SET"])) == (g[3], g[4], int(g[5]))
    elif name == "CCPG":
        assert (shipped["TRAIN_SET"][0], shipped["TRAIN_SET"][-1]) == (g[0], g[1])
        assert (shipped["TEST_SET"][0], shipped["TEST_SET"][-1]) == (g[2], g[3])
        assert len(shipped["TRAIN_SET"]) == int(g[1]) - int(g[0]) + 1
        assert len(shipped["TEST_SET"]) == int(g[3]) - int(g[2]) + 1
    else:
        assert (len(shipped["TRAIN_SET"]), len(shipped["TEST_SET"])) == (int(g[0]), int(g[1]))
