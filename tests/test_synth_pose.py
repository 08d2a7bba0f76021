"""Synthetic walkers through the real pose model (BlazePose-full via LiteRT) and the real extraction.

These are the checks that make the synthetic data worth anything: the pose model must see the figures
(presence) and put its heatmap peaks where the walkers' true joints are, and a CASIA-B tree of
synthetic videos must come out of ``extract_to_store`` with the right subject/condition/view.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import media_required

from gaitheat.synth import VIEWS, load_ground_truth, render_sequence, sample_identity, sequence_paths, write_dataset


@pytest.fixture(scope="module")
def pose():  # type: ignore[no-untyped-def]
    from gaitheat.pose import build_pose_backend

    try:
        return build_pose_backend("blazepose")
    except (FileNotFoundError, ValueError, ImportError) as exc:
        # a real part the install provides: missing it fails `make test` / CI, as missing media does
        if media_required():
            pytest.fail(f"BlazePose model not available: {exc}", pytrace=False)
        pytest.skip(f"BlazePose model not available: {exc}")


@pytest.mark.slow
def test_pose_model_sees_the_walkers_where_they_are(pose) -> None:  # type: ignore[no-untyped-def]
    from gaitheat.crop import apply_affine, crop_person, pad_box

    rng = np.random.default_rng(2024)
    presence, errors = [], []
    # 12 people x 10 frames over all 11 views and the three covariates
    for k in range(12):
        person = sample_identity(rng, 0.5)
        condition = ("nm-01", "bg-01", "cl-01")[k % 3]
        frames, joints, boxes = render_sequence(person, condition, VIEWS[k % len(VIEWS)], frames=30, seed=100 + k)
        for t in range(0, 30, 3):
            crop, matrix = crop_person(frames[t], pad_box(boxes[t]), pose.input_size)
            result = pose(crop[None])
            # heatmap cell (i, j) sits at crop pixel (4j, 4i)
            truth = apply_affine(matrix, joints[t]) / 4.0
            presence.append(float(result.presence[0]))
            errors.append(np.linalg.norm(result.keypoints[0, :, :2] - truth, axis=1))
    presence_ok = np.mean(np.array(presence) > 0.5)
    median_error = float(np.median(np.concatenate(errors)))
    assert presence_ok >= 0.99, f"presence > 0.5 on only {presence_ok:.3f} of frames"
    assert median_error <= 1.5, f"median heatmap-argmax error {median_error:.2f} cells"


@pytest.mark.slow
def test_casia_b_tree_round_trip_through_extraction(tmp_path: Path) -> None:
    from gaitheat.extract import ExtractConfig, parse_dataset_name
    from gaitheat.extract_store import extract_to_store
    from gaitheat.manifest import load_manifest
    from gaitheat.storage import read_sequence

    videos, store = tmp_path / "videos", tmp_path / "store"
    write_dataset(videos, ["003", "011"], ["nm-02", "cl-01"], ["090"], frames=16, seed=7, progress=False)
    write_dataset(videos, ["011"], ["bg-02"], ["036"], frames=16, seed=7, progress=False)
    video, _ = sequence_paths(videos, "011", "bg-02", "036")
    assert parse_dataset_name(video) == ("011", "bg-02", "036")
    summary = extract_to_store([videos], store, ExtractConfig(min_frames=8), workers=1)
    assert summary["failed"] == 0, summary["failures"]
    rows = load_manifest(store)
    found = sorted((r.subject, r.condition, r.view) for r in rows)
    assert found == [("003", "cl-01", "090"), ("003", "nm-02", "090"), ("011", "bg-02", "036"),
                     ("011", "cl-01", "090"), ("011", "nm-02", "090")]
    seq = read_sequence(store / next(r.path for r in rows if r.condition == "bg-02"))
    assert (seq.meta.subject, seq.meta.condition, seq.meta.view) == ("011", "bg-02", "036")
    assert seq.num_frames >= 14 and seq.heatmaps.shape[1:] == (17, 64, 48)
    # the stored source-pixel keypoints agree with the synthetic ground truth
    gt = load_ground_truth(video)
    assert seq.image_keypoints is not None
    err = np.linalg.norm(seq.image_keypoints[..., :2] - gt["joints"][seq.frame_indices], axis=-1)
    height = float(np.median(gt["boxes"][:, 3] - gt["boxes"][:, 1]))
    assert np.median(err) < 0.05 * height
