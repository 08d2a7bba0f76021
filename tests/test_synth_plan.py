"""The pretraining synthesis plan: normative kinematics, identities, the held-out partition, resuming."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from gaitheat.synth import walker as W
from gaitheat.synth.dataset import subject_person
from gaitheat.synth.plan import PLANS, SynthPlan, build_plan, get_plan

CYCLE = np.arange(200) / 200


def test_normative_curves_pass_through_their_published_key_points() -> None:
    for joint, points in W.NORMATIVE_KEYPOINTS.items():
        at = np.array([p[0] for p in points]) / 100
        fitted = W.fourier_curve(W.NORMATIVE[joint], at)
        # the 6-harmonic series stays within 1.5 degrees of every key point read off the published curves
        assert np.abs(fitted - [p[1] for p in points]).max() < 1.5, joint
    hip, knee, ankle = (W.fourier_curve(W.NORMATIVE[j], CYCLE) for j in ("hip", "knee", "ankle"))
    # landmarks of normal gait: peak hip extension late in stance, peak knee flexion in swing (~72%),
    # peak plantarflexion just after toe off (~62%)
    assert 0.45 < CYCLE[hip.argmin()] < 0.6 and -12 < hip.min() < -8
    assert 0.65 < CYCLE[knee.argmax()] < 0.8 and 58 < knee.max() < 66
    assert 0.58 < CYCLE[ankle.argmin()] < 0.68 and -18 < ankle.min() < -13


def test_sampled_people_match_the_normative_mean_and_spread() -> None:
    rng = np.random.default_rng(0)
    people = [W.sample_kinematics(rng, difficulty=0.0) for _ in range(3000)]
    for joint in W.JOINTS_SAGITTAL:
        curves = np.stack([W.fourier_curve(getattr(k, joint), CYCLE) for k in people])
        mean_error = np.abs(curves.mean(0) - W.fourier_curve(W.NORMATIVE[joint], CYCLE)).max()
        spread = curves.std(0).mean()
        assert mean_error < 0.6, joint  # degrees, everywhere in the cycle
        # the published between-person SD (truncation at 2.5 sigma trims a little)
        assert 0.9 * W.NORMATIVE_SD[joint] < spread < 1.05 * W.NORMATIVE_SD[joint], (joint, spread)
    hard = [W.sample_kinematics(rng, difficulty=1.0) for _ in range(500)]
    hip_hard = np.stack([W.fourier_curve(k.hip, CYCLE) for k in hard]).std(0).mean()
    assert hip_hard < 0.25 * W.NORMATIVE_SD["hip"]


def test_normative_walk_keeps_feet_on_the_ground_and_differs_from_the_parametric_one() -> None:
    person = W.sample_identity(np.random.default_rng(1), 0.15)
    kin = W.sample_kinematics(np.random.default_rng(2), 0.15)
    phase = np.linspace(0, 4 * np.pi, 60)
    normative = W.walk(person, phase, kinematics=kin)
    parametric = W.walk(person, phase)
    feet = normative.joints[:, [W.L_ANK, W.R_ANK], 2]
    toes = np.stack([normative.extra["l_toe"][:, 2], normative.extra["r_toe"][:, 2]], 1)
    ankle_h = 0.045 * person.height
    # the pelvis keeps the lowest of ankle, heel and toe at ankle height (plus the identity's extra
    # bob): nothing sinks below that, and a foot is always near the ground
    lowest = np.minimum(feet.min(1), toes.min(1))
    assert np.all(lowest >= ankle_h - abs(person.head_bob) - 1e-9)
    assert np.all(lowest < ankle_h + abs(person.head_bob) + 0.03)
    knee = W.L_KNE
    assert np.abs(normative.joints[:, knee] - parametric.joints[:, knee]).max() > 0.02
    # the knee's sagittal angle follows the person's curve: maximum flexion in swing is near the curve's peak
    thigh = normative.joints[:, W.R_KNE] - normative.joints[:, W.R_HIP]
    shank = normative.joints[:, W.R_ANK] - normative.joints[:, W.R_KNE]
    cos = (thigh * shank).sum(1) / np.linalg.norm(thigh, axis=1) / np.linalg.norm(shank, axis=1)
    flexion = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    peak = W.fourier_curve(kin.knee, CYCLE).max()
    assert abs(flexion.max() - peak) < 4.0


def test_pretrain_plan_identities_are_distinct_and_deterministic() -> None:
    plan = get_plan("pretrain")
    train, test = plan.subjects()
    assert len(train) >= 300 and len(test) >= 50 and len(set(train + test)) == len(train) + len(test)
    assert plan.views == tuple(f"{a:03d}" for a in range(0, 181, 18))
    assert {c.split("-")[0] for c in plan.train_conditions} == {"nm", "bg", "cl"}
    people = [subject_person(plan.seed, s, plan.difficulty, plan.motion) for s in train + test]
    bodies = {tuple(dataclasses.astuple(p)) for p, _ in people}
    curves = {tuple(k.hip + k.knee + k.ankle) for _, k in people if k is not None}
    assert len(bodies) == len(people) and len(curves) == len(people)
    again = [subject_person(plan.seed, s, plan.difficulty, plan.motion) for s in (train[0], test[-1])]
    assert again == [people[0], people[-1]]
    # other people than the demo's (seed 0) under the same names
    assert subject_person(0, train[0], plan.difficulty, plan.motion)[0] != people[0][0]


def test_rounds_cover_every_subject_once_and_the_partition_is_disjoint(tmp_path: Path) -> None:
    plan = get_plan("pretrain")
    train, test = plan.subjects()
    rounds = plan.rounds()
    assert sorted(s for tr, _ in rounds for s in tr) == train
    assert sorted(s for _, te in rounds for s in te) == test
    assert all(te for _, te in rounds)  # every round brings some held-out identities
    assert plan.videos() == 11 * (len(train) * len(plan.train_conditions) + len(test) * 10)
    tiny = dataclasses.replace(PLANS["pretrain-tiny"], name="micro", train_subjects=1, test_subjects=1,
                               views=("090",), train_conditions=("nm-01",), test_conditions=("nm-01",), frames=2)
    build_plan(tmp_path, tiny, extract=False, progress=False)
    partition = json.loads((tmp_path / "partition.json").read_text())
    assert set(partition) == {"TRAIN_SET", "TEST_SET"}
    assert partition == {"TRAIN_SET": ["001"], "TEST_SET": ["002"]}
    with pytest.raises(ValueError, match="another plan"):
        build_plan(tmp_path, dataclasses.replace(tiny, seed=5), extract=False, progress=False)


def test_build_resumes_and_skips_finished_work(tmp_path: Path) -> None:
    plan = SynthPlan("micro", train_subjects=2, test_subjects=1, views=("090",), train_conditions=("nm-01",),
                     test_conditions=("nm-01",), frames=8, round_subjects=1)
    first = build_plan(tmp_path, plan, progress=False)
    assert first == first | {"written": 3, "skipped": 0, "extracted": 3, "extract_skipped": 0, "extract_failed": 0}
    video = tmp_path / "videos" / "002" / "nm-01" / "090" / "002-nm-01-090.avi"
    record = json.loads(video.with_suffix(".json").read_text())
    assert record["fps"] == 12.5 and record["motion"] == "normative"
    assert set(record["kinematics"]) == {"hip", "knee", "ankle"}
    # a build killed after this video's ground truth but before its mask and video were written
    video.with_suffix(".mask.npz").unlink()
    video.unlink()
    again = build_plan(tmp_path, plan, progress=False)
    # only that video is rendered and extracted again (a new file: its done marker no longer matches)
    assert again == again | {"written": 1, "skipped": 2, "extracted": 1, "extract_skipped": 2}
    third = build_plan(tmp_path, plan, progress=False)
    assert third == third | {"written": 0, "skipped": 3, "extracted": 0, "extract_skipped": 3}
    assert len(list((tmp_path / "store").rglob("*.ghs"))) == 3


def test_cli_plan_rejects_bad_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gaitheat.cli import main

    assert main(["synth", "--plan", "nope", "--out", str(tmp_path / "a")]) == 2
    assert "pretrain" in capsys.readouterr().err  # names the known plans
    assert main(["synth", "--plan", "pretrain", "--subjects", "3", "--out", str(tmp_path / "b")]) == 2
    assert main(["synth", "--out", str(tmp_path / "c")]) == 2
    assert "--subjects" in capsys.readouterr().err
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "plan.json").write_text('{"name": "other"}')
    assert main(["synth", "--plan", "pretrain-tiny", "--out", str(tmp_path / "d")]) == 2
    assert "another plan" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "d" / "videos").exists()
