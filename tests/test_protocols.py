"""Protocols as data: subset selection on synthetic type names and a constructed CASIA-B-shaped example."""

from __future__ import annotations

import numpy as np
import pytest

from gaitheat.evaluate import evaluate_embeddings, resolve_protocol
from gaitheat.experiment import EvalConfig
from gaitheat.protocols import (
    CASIA_B,
    CCPG,
    PROTOCOLS,
    SUSTECH1K,
    evaluation_subjects,
    get_protocol,
    select_conditions,
    view_key,
)


def _selected(names: list[str], patterns: tuple[str, ...], rule: str) -> list[str]:
    return [n for n, keep in zip(names, select_conditions(names, patterns, rule), strict=True) if keep]  # type: ignore[arg-type]


def test_official_test_splits() -> None:
    casia = evaluation_subjects(CASIA_B)
    assert casia is not None and len(casia) == 50 and casia[0] == "075" and casia[-1] == "124"
    assert len(evaluation_subjects(CCPG) or []) == 100
    assert len(evaluation_subjects(SUSTECH1K) or []) == 800


def test_casia_b_sets() -> None:
    names = [f"nm-0{i}" for i in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"]
    assert _selected(names, CASIA_B.gallery, CASIA_B.match) == ["nm-01", "nm-02", "nm-03", "nm-04"]
    probes = {p.name: _selected(names, p.conditions, CASIA_B.match) for p in CASIA_B.probes}
    assert probes == {"NM": ["nm-05", "nm-06"], "BG": ["bg-01", "bg-02"], "CL": ["cl-01", "cl-02"]}
    assert CASIA_B.expected_views == ("000", "018", "036", "054", "072", "090", "108", "126", "144", "162", "180")
    assert CASIA_B.gamma_deg == 5.0 and CASIA_B.exclude_identical_view


def test_ccpg_sets_use_exact_type_names_and_truncated_views() -> None:
    names = ["U0_D0", "U0_D0_BG", "U1_D1", "U2_D2", "U3_D3", "U0_D3", "U1_D0", "U3_D0"]
    got = {p.name: (_selected(names, p.conditions, CCPG.match), _selected(names, CCPG.gallery_of(p), CCPG.match))
           for p in CCPG.probes}
    assert got == {
        "CL": (["U0_D0", "U0_D0_BG"], ["U1_D1", "U2_D2", "U3_D3"]),
        "UP": (["U3_D3"], ["U0_D3"]),
        "DN": (["U1_D0"], ["U1_D1"]),
        "BG": (["U0_D0_BG"], ["U0_D0"]),  # exact: U0_D0 as gallery must not also pick up U0_D0_BG
    }
    assert [view_key(v, CCPG.view_rule) for v in ("1_1", "10_2", "3")] == ["1", "10", "3"]
    assert view_key("1_1", CASIA_B.view_rule) == "1_1"
    assert CCPG.gamma_deg == 20.0 and CCPG.reid


def test_sustech1k_groups_are_overlapping_substrings() -> None:
    names = ["00-nm", "01-nm", "01-bg", "02-bg-nt", "03-cl-ub", "01-cr", "04-uf-oc", "01-nt"]
    got = {p.name: _selected(names, p.conditions, SUSTECH1K.match) for p in SUSTECH1K.probes}
    assert got == {
        "NM": ["01-nm"],
        "BG": ["01-bg", "02-bg-nt"],
        "CL": ["03-cl-ub"],
        "CA": ["01-cr"],
        "UM": ["03-cl-ub"],
        "UN": ["04-uf-oc"],
        "OC": ["04-uf-oc"],
        "NG": ["02-bg-nt", "01-nt"],
        "Overall": names[1:],
    }
    assert _selected(names, SUSTECH1K.gallery, SUSTECH1K.match) == ["00-nm"]
    assert SUSTECH1K.ranks == (1, 5)


def test_custom_protocol_from_eval_config() -> None:
    proto = resolve_protocol(EvalConfig(protocol="custom", gallery=("nm-0[1-4]",),
                                        probes={"NM": ("nm-05", "nm-06"), "ALL": ("bg-*", "cl-*")}), gamma_deg=7.0)
    assert [p.name for p in proto.probes] == ["NM", "ALL"] and proto.gamma_deg == 7.0
    names = ["nm-01", "nm-04", "nm-05", "bg-02", "cl-01", "x-nm-01"]
    assert _selected(names, proto.gallery, proto.match) == ["nm-01", "nm-04"]
    assert _selected(names, proto.probes[1].conditions, proto.match) == ["bg-02", "cl-01"]
    with pytest.raises(ValueError, match=r"eval\.gallery"):
        resolve_protocol(EvalConfig(protocol="custom", probes={"NM": ("nm-05",)}))
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("oumvlp")
    assert set(PROTOCOLS) == {"casia-b", "ccpg", "sustech1k"}


def _casia_shaped_example() -> tuple[np.ndarray, list[str], list[str], list[str]]:
    """2 test subjects x 10 sequences x 11 views with hand-placed embeddings (D = 4, P = 2).

    Dimensions: [subject 075, subject 076, "z", unused]. Every sequence sits on its subject's axis,
    except subject 076's two CL probes at view 000: they sit on subject 075's axis plus z = 3, and
    076's gallery at view 000 carries z = 1. So at gallery view 000 those probes find 076 (hit), at
    every other gallery view they find 075 (miss); all other probes hit everywhere.
    """
    views = list(CASIA_B.expected_views)
    conditions = [f"nm-0{i}" for i in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"]
    emb, subj, cond, view = [], [], [], []
    for s, subject in enumerate(("075", "076")):
        for c in conditions:
            for v in views:
                x = np.zeros((4, 2), dtype=np.float32)
                x[s] = 1.0
                if subject == "076" and v == "000" and c in CASIA_B.gallery:
                    x[2] = 1.0  # still nearer to 076's ordinary probes (1) than 075 is (sqrt 2)
                if subject == "076" and v == "000" and c.startswith("cl"):
                    x[:] = 0.0
                    x[0], x[2] = 1.0, 3.0  # 075's axis + z: 076@000 at sqrt(6) beats 075@000 at 3
                emb.append(x)
                subj.append(subject)
                cond.append(c)
                view.append(v)
    return np.stack(emb), subj, cond, view


def test_identical_view_exclusion_on_casia_b_shaped_example() -> None:
    emb, subj, cond, view = _casia_shaped_example()
    res = evaluate_embeddings(CASIA_B, emb, subj, cond, view)
    assert res["views"] == list(CASIA_B.expected_views)
    cl = np.array(res["sets"]["CL"]["matrix"]["rank1"])
    # row 000: the diagonal hits for both subjects, every other gallery view misses 076's 2 probes of 4
    np.testing.assert_array_equal(cl[0], [100.0] + [50.0] * 10)
    np.testing.assert_array_equal(cl[1:], np.full((10, 11), 100.0))
    # excluding identical views: row 000 averages 10 cells of 50; the mean over 11 probe views
    assert res["sets"]["CL"]["per_view"]["rank1"] == [50.0] + [100.0] * 10
    assert res["sets"]["CL"]["rank1"] == pytest.approx((50 + 10 * 100) / 11)
    assert res["sets"]["CL"]["rank1_incl_identical"] == pytest.approx(((100 + 10 * 50) / 11 + 10 * 100) / 11)
    assert res["sets"]["NM"]["rank1"] == 100.0 and res["sets"]["BG"]["rank1"] == 100.0
    assert res["headline"] == pytest.approx({"NM": 100.0, "BG": 100.0, "CL": 1050 / 11,
                                             "Mean": (200 + 1050 / 11) / 3})
    assert res["sets"]["NM"]["num_probes"] == 2 * 2 * 11 and res["sets"]["NM"]["num_gallery"] == 2 * 4 * 11
    # a view's gallery holds 4 sequences of each subject: the misses find 076 at rank 5
    assert res["sets"]["CL"]["cmc"][3] == pytest.approx(1050 / 11) and res["sets"]["CL"]["cmc"][4] == 100.0


def test_ccpg_and_sustech1k_report_their_labelled_numbers() -> None:
    rng = np.random.default_rng(0)
    subjects = ["100", "101", "102"]
    types = ["U0_D0", "U0_D0_BG", "U1_D1", "U2_D2", "U3_D3", "U0_D3", "U1_D0"]
    rows = [(s, t, f"{v}_1") for s in subjects for t in types for v in range(3)]
    centres = {s: rng.normal(size=(8, 2)) * 5 for s in subjects}
    emb = np.stack([centres[s] + 0.1 * rng.normal(size=(8, 2)) for s, _, _ in rows]).astype(np.float32)
    res = evaluate_embeddings(CCPG, emb, *map(list, zip(*rows, strict=True)))
    assert res["views"] == ["0", "1", "2"]
    # the paper's Table 1 pairs re-ID R-1 with mAP; the gait-style R-1 stays beside it
    assert res["headline_family"] == "reid" and "Table 1" in res["headline_label"]
    assert set(res["headline"]) == {f"{n} re-ID {m}" for n in ("CL", "UP", "DN", "BG") for m in ("R-1", "mAP")}
    assert set(res["beside_headline"]) == {f"{n} gait R-1, identical views excluded" for n in ("CL", "UP", "DN", "BG")}
    assert "subject and view removed" in res["labels"]["reid.rank1"]
    assert "identical views excluded" in res["labels"]["rank1"]
    for name in ("CL", "UP", "DN", "BG"):
        s = res["sets"][name]
        assert s["rank1"] == 100.0 and s["reid"]["rank1"] == 100.0 and s["reid"]["mAP"] == pytest.approx(100.0)
        assert res["headline"][f"{name} re-ID mAP"] == s["reid"]["mAP"]
    sus_types = ["00-nm", "01-nm", "01-bg", "02-bg-nt"]
    rows = [(s, t, v) for s in subjects for t in sus_types for v in ("000", "090")]
    emb = np.stack([centres[s] + 0.1 * rng.normal(size=(8, 2)) for s, _, _ in rows]).astype(np.float32)
    res = evaluate_embeddings(SUSTECH1K, emb, *map(list, zip(*rows, strict=True)))
    assert {"R-1", "R-5", "NM", "BG", "NG"} <= set(res["headline"])
    assert res["sets"]["BG"]["num_probes"] == 3 * 2 * 2  # 01-bg and 02-bg-nt
    assert res["sets"]["Overall"]["num_probes"] == 3 * 3 * 2
    assert set(res["sets"]["Overall"]["matrix"]) == {"rank1", "rank5"}
    assert res["headline"]["R-5"] == res["sets"]["Overall"]["rank5"] >= res["headline"]["R-1"]
    assert np.isnan(res["sets"]["CL"]["rank1"])  # no clothing probes in this store
