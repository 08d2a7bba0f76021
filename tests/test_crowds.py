"""Crowd scenes: synthetic ground truth, TrackEval metrics on known cases, the CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from gaitheat.synth.crowd import format_mot, load_crowd_truth, mot_rows, plan_scene, render_scene, write_scene
from gaitheat.tracking_metrics import evaluate_tracks, format_mot_rows, read_mot, read_tracks

A, B = [0.0, 0.0, 10.0, 20.0], [50.0, 0.0, 10.0, 20.0]


def _two_people(frames: int = 4) -> np.ndarray:
    return np.array([[f, 1, *A, 1, 1, 1] for f in range(1, frames + 1)] + [[f, 2, *B, 1, 1, 1]
                    for f in range(1, frames + 1)], float)


def test_known_hota_idf1_after_a_round_trip_through_mot_text(tmp_path: Path) -> None:
    gt = _two_people()
    swapped = gt.copy()
    late = swapped[:, 0] > 2
    swapped[late, 1] = 3 - swapped[late, 1]  # the two predicted identities swap after frame 2
    (tmp_path / "gt.txt").write_text(format_mot(gt))
    (tmp_path / "pred.txt").write_text(format_mot_rows(swapped[:, :6]))
    gt_back, pred_back = read_mot(tmp_path / "gt.txt"), read_mot(tmp_path / "pred.txt")
    np.testing.assert_allclose(gt_back, gt)
    perfect = evaluate_tracks([(gt_back, gt_back)])
    assert perfect["hota"] == pytest.approx(1.0) and perfect["idf1"] == pytest.approx(1.0)
    assert perfect["id_switches"] == 0 and perfect["mota"] == pytest.approx(1.0)
    res = evaluate_tracks([(gt_back, pred_back)])
    # every box is found (DetA 1); each predicted id follows each person for half the frames:
    # AssA = TPA / (TPA + FPA + FNA) = 2 / 6, HOTA = sqrt(DetA * AssA); IDF1 = 4 / 8; two switches
    assert res["deta"] == pytest.approx(1.0)
    assert res["assa"] == pytest.approx(1 / 3)
    assert res["hota"] == pytest.approx(np.sqrt(1 / 3))
    assert res["idf1"] == pytest.approx(0.5) and res["id_switches"] == 2
    assert res["mota"] == pytest.approx(0.75)  # 8 matches, 2 switches: 1 - 2 / 8


def test_ignored_ground_truth_neither_counts_nor_penalises() -> None:
    gt = _two_people()
    gt[gt[:, 1] == 2, 6] = 0  # person 2 is flagged "ignore" (mostly hidden)
    only_one = _two_people()[:4]
    both = _two_people()
    assert evaluate_tracks([(gt, only_one)])["idf1"] == pytest.approx(1.0)
    assert evaluate_tracks([(gt, both)])["idf1"] == pytest.approx(1.0)  # a box on the ignored one is no error
    missed = evaluate_tracks([(_two_people(), only_one)])
    assert missed["idf1"] == pytest.approx(2 / 3) and missed["deta"] == pytest.approx(0.5)


def test_bad_mot_rows_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("1,1,0,0,10,20\n2,x,0,0,1,1\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2"):
        read_mot(bad)
    with pytest.raises(ValueError, match="cannot read"):
        read_mot(tmp_path / "missing.txt")


def test_crowd_scene_is_deterministic_with_consistent_ground_truth(tmp_path: Path) -> None:
    scene = plan_scene("crossing", ["001", "002", "003"], frames=6, seed=2, name="crossing-t")
    assert plan_scene("crossing", ["001", "002", "003"], frames=6, seed=2, name="crossing-t") == scene
    paths = write_scene(tmp_path / "a", scene, size=(120, 200))
    again = write_scene(tmp_path / "b", scene, size=(120, 200))
    for key in ("video", "json", "gt"):
        assert hashlib.sha256(paths[key].read_bytes()).digest() == hashlib.sha256(again[key].read_bytes()).digest()
    record, truth = load_crowd_truth(paths["json"].parent)
    assert record["type"] == "crossing" and [p["subject"] for p in record["people"]] == ["001", "002", "003"]
    assert truth.boxes.shape == (3, 6, 4) and truth.joints.shape == (3, 6, 17, 2)
    assert np.all((truth.visibility >= 0) & (truth.visibility <= 1))
    rows = read_mot(paths["gt"])
    np.testing.assert_allclose(rows, mot_rows(truth), atol=0.006)
    np.testing.assert_allclose(read_tracks(paths["json"]), mot_rows(truth))
    # a visible joint is never far outside its person's box
    present = ~np.isnan(truth.boxes[..., 0])
    for p, t in zip(*np.nonzero(present), strict=True):
        j = truth.joints[p, t][truth.joints_visible[p, t]]
        assert np.all((j >= truth.boxes[p, t, :2] - 4) & (j <= truth.boxes[p, t, 2:] + 4))


def test_occlusion_lowers_visibility_when_people_overlap() -> None:
    # side by side across the image: one partner walks behind the other and is partly hidden
    scene = plan_scene("side_by_side", ["001", "002"], frames=3, seed=0, name="sbs-t")
    _, truth = render_scene(scene, size=(135, 240))
    assert truth.visibility[0].min() > 0.95 or truth.visibility[1].min() > 0.95
    assert min(truth.visibility[0].min(), truth.visibility[1].min()) < 0.9
    hidden = int(np.argmin(truth.visibility.min(axis=1)))
    assert (~truth.joints_visible[hidden]).sum() > 0


def test_cli_crowd_and_eval_tracks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from gaitheat.cli import main

    out = tmp_path / "crowd"
    assert main(["synth", "--crowd", "--subjects", "3", "--scenes", "1", "--types", "overtaking", "--frames", "3",
                 "--size", "160x96", "--out", str(out)]) == 0
    gt = out / "overtaking-000" / "gt" / "gt.txt"
    assert gt.exists() and (out / "overtaking-000" / "overtaking-000.avi").exists()
    assert main(["eval-tracks", str(gt), str(gt), "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["idf1"] == pytest.approx(1.0)
    assert main(["synth", "--crowd", "--subjects", "3", "--walkers", "9", "--out", str(out)]) == 2
    assert main(["eval-tracks", str(gt), str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt" in capsys.readouterr().err


def _pose(x: float, y: float, h: float = 100.0) -> np.ndarray:
    """A crude upright 17-joint pose, top at (x, y), ``h`` pixels tall, all joints confident."""
    rows = np.linspace(0.05, 1.0, 17)
    return np.stack([x + 25 * np.sin(np.arange(17)), y + rows * h, np.full(17, 0.9)], axis=1)


def test_same_pose_and_crowded_crops() -> None:
    from gaitheat.crop import crowded, keypoints_box, same_pose

    a, a2, b = _pose(100, 50), _pose(102, 51), _pose(125, 60, 90)  # b: someone just behind a, overlapping
    same = same_pose(np.stack([a, a2, b]))
    assert same[0, 1] and not same[0, 2] and not same[1, 2]
    boxes = np.stack([keypoints_box(p) for p in (a, b)])
    far = _pose(300, 50)
    assert crowded(np.stack([a, b]), boxes).tolist() == [True, True]
    assert crowded(np.stack([a, far]), np.stack([keypoints_box(a), keypoints_box(far)])).tolist() == [False, False]


def test_relink_undoes_a_swap_where_two_walkers_cross() -> None:
    from gaitheat.track import TrackCollector, relink

    frames = np.arange(40)
    right = np.stack([50 + 4 * frames, np.full(40, 50)], axis=1).astype(float)  # walks right
    left = np.stack([210 - 4 * frames, np.full(40, 60)], axis=1).astype(float)  # walks left, a little lower
    collector = TrackCollector()
    for f in frames:
        # the tracker swaps the two at the crossing (frame 20): track 0 follows `right`, then `left`
        first, second = (right[f], left[f]) if f < 20 else (left[f], right[f])
        people = {"boxes": np.array([[*np.subtract(first, (15, 0)), *np.add(first, (15, 100)), 0.9],
                                     [*np.subtract(second, (15, 0)), *np.add(second, (15, 100)), 0.9]], np.float32)}
        collector.add_frame(int(f), people, np.array([0, 1]))
    fixed = relink(collector, fps=25.0, max_gap=25)
    assert len(fixed.track_ids) == 2
    for track_id in fixed.track_ids:
        _, rows = fixed.stacked(track_id)
        xs = (rows["boxes"][:, 0] + rows["boxes"][:, 2]) / 2
        assert len(xs) == 40 and (np.all(np.diff(xs) > 0) or np.all(np.diff(xs) < 0))  # one walker each


def test_schedule_searches_for_someone_gone_behind_another() -> None:
    from gaitheat.detect import DetectionSchedule

    class Source:
        every_frame = False

        def __init__(self) -> None:
            self.scanned: list[list[tuple[int, int, int]]] = []

        def views(self, width: int, height: int) -> list[tuple[int, int, int]]:
            return [(0, 0, max(width, height))]

        def scan(self, rgb: np.ndarray, views: list[tuple[int, int, int]], helper: object = None) -> np.ndarray:
            self.scanned.append(list(views))
            return np.zeros((0, 5), np.float32)

    source = Source()
    schedule = DetectionSchedule(source, period=1000, periodic=False, lost_frames=0, hidden_frames=5)
    rgb = np.zeros((300, 400, 3), np.uint8)
    front = np.array([[100, 50, 150, 250, 0.9]], np.float32)
    behind = np.array([[120, 60, 165, 240, 0.9]], np.float32)
    both = np.concatenate([front, behind])
    schedule.update(both, both)  # both followed for two frames
    schedule.update(both, front)  # `behind`'s crop found `front` again: gone behind them
    assert len(schedule.hidden) == 1
    schedule(rgb, 2, 2, front)
    assert source.scanned and source.scanned[-1]  # searched around the two of them
    schedule.update(front, both)  # found again beside `front`
    assert len(schedule.hidden) == 0


@pytest.mark.slow
def test_two_people_side_by_side_give_two_pure_sequences(tmp_path: Path) -> None:
    """Two walkers 0.36 m apart, side by side, through the real detector, pose model and tracker."""
    from gaitheat.extract import ExtractConfig, extract_video_report
    from gaitheat.tracking_metrics import sequence_purity

    scene = plan_scene("side_by_side", ["101", "102"], frames=50, seed=5, difficulty=0.15, name="sbs-5")
    lateral = np.subtract(scene.walkers[1].meet, scene.walkers[0].meet)
    assert 0.3 <= np.linalg.norm(lateral) <= 1.0 and scene.walkers[0].heading == scene.walkers[1].heading
    paths = write_scene(tmp_path, scene)
    _, truth = load_crowd_truth(paths["json"])
    report = extract_video_report(paths["video"], ExtractConfig(tracks_out=str(tmp_path / "tracks")))
    purity = [sequence_purity(t.sequence.image_keypoints, t.sequence.frame_indices, truth) for t in report.tracks]
    assert len(purity) == 2, purity
    assert sorted(p["person"] for p in purity) == [0, 1]
    assert all(p["purity"] >= 0.95 and p["frames"] >= 40 for p in purity), purity
    written = read_mot(tmp_path / "tracks" / "sbs-5.txt")
    np.testing.assert_allclose(written[:, :6], report.track_rows[:, :6], atol=0.006)
    assert evaluate_tracks([(read_mot(paths["gt"]), written)])["idf1"] >= 0.8


def test_mask_box_maps_the_mask_outline_to_source_pixels() -> None:
    from gaitheat.crop import mask_box

    mask = np.zeros((256, 192), bool)
    mask[10:20, 20:30] = True  # rows 10-19, columns 20-29
    crop_box = np.array([100.0, 50.0, 100.0 + 2 * 192, 50.0 + 2 * 256])  # 2 source pixels per mask pixel
    np.testing.assert_allclose(mask_box(mask, crop_box), [140.0, 70.0, 160.0, 90.0])
    assert mask_box(np.zeros((256, 192), bool), crop_box) is None


def test_frames_where_someone_went_out_of_sight_behind_a_person_are_crowded() -> None:
    from gaitheat.extract import _crowded_by_neighbours
    from gaitheat.track import TrackCollector

    front = np.array([100, 50, 150, 250, 0.9], np.float32)
    beside = np.array([120, 55, 170, 245, 0.9], np.float32)  # a pair walking together, overlapping
    far = np.array([300, 50, 350, 250, 0.9], np.float32)
    collector = TrackCollector()
    for f in range(30):
        people = [front] + ([beside] if not 10 <= f < 20 else [])  # the partner is not found in frames 10-19
        people += [far]
        collector.add_frame(f, {"boxes": np.stack(people)}, np.array([0, 1, 2] if len(people) == 3 else [0, 2]))
    near = _crowded_by_neighbours(collector, window=25)
    assert np.flatnonzero(near[0]).tolist() == list(range(10, 20))  # only where the partner was hidden
    assert not near[1].any() and not near[2].any()  # the partner's own frames, and someone far away: clean

    pieces = TrackCollector()  # one walk broken in two pieces: never seen together, so no one else
    for f in range(30):
        pieces.add_frame(f, {"boxes": front[None]}, np.array([0 if f < 15 else 1]))
    assert not any(flags.any() for flags in _crowded_by_neighbours(pieces, window=25).values())


# Torso x (source pixels) of one track of the crowd benchmark's crossing-000 with `search_behind` (2026-11-30): it
# follows a walker going left until frame 25, holds both people while they cross (frames 26-30, where it hardly
# moves), then follows the other walker going right.
CROSSING_TRACK_X = [332, 328, 325, 322, 317, 314, 312, 309, 306, 303, 300, 297, 294, 292, 289, 286, 281, 278, 275, 273,
                    270, 267, 264, 263, 260, 259, 244, 241, 240, 239, 241, 244, 248, 253, 257, 260, 264, 267, 270, 274,
                    278, 281, 286, 288, 293, 297, 299, 302, 306, 310, 313, 318, 322, 325, 328, 331, 335, 338, 341, 346]


def test_a_track_that_slowed_while_holding_two_crossing_people_is_cut_at_the_jump() -> None:
    from gaitheat.track import split_points

    frames = np.arange(60)
    centres = np.stack([np.array(CROSSING_TRACK_X, float), np.full(60, 150.0)], axis=1)
    cuts = split_points(frames, centres, np.full(60, 135.0), fps=25.0)
    # one cut, where the walk turned (26-30); scoring each cut on windows of its own put it at 35, past the jump
    assert len(cuts) == 1 and 26 <= cuts[0] <= 30, cuts


def test_relink_joins_a_piece_that_overlaps_the_walk_it_continues() -> None:
    from gaitheat.track import TrackCollector, relink

    right = lambda f: 180.0 + 3.5 * f  # noqa: E731
    left = lambda f: 330.0 - 3.0 * f  # noqa: E731
    collector = TrackCollector()

    def box(x: float, height: float = 120.0) -> np.ndarray:
        return np.array([x - 20, 100, x + 20, 100 + height, 0.9], np.float32)

    for f in range(60):
        boxes, ids = [], []
        # track 0: the left-goer, then (from frame 26) stuck between the two while they cross, then the right-goer
        x0 = left(f) if f < 26 else (left(f) + right(f)) / 2 if f < 30 else right(f)
        boxes.append(box(x0, 120.0 if f < 26 or f >= 30 else 150.0))
        ids.append(0)
        if f <= 26:  # track 1: the right-goer, lost at the crossing (frame 26 is in both tracks)
            boxes.append(box(right(f)))
            ids.append(1)
        collector.add_frame(f, {"boxes": np.stack(boxes)}, np.array(ids))
    fixed = relink(collector, fps=25.0, max_gap=25)
    walks = {}
    for track_id in fixed.track_ids:
        frames, rows = fixed.stacked(track_id)
        assert len(np.unique(frames)) == len(frames)  # never two rows in one frame
        xs = (rows["boxes"][:, 0] + rows["boxes"][:, 2]) / 2
        walks[track_id] = (frames, xs)
    # the right-goer's two pieces are one track from frame 0 to 59, and it holds the right-goer throughout
    (frames, xs), = [w for w in walks.values() if w[0][0] == 0 and w[0][-1] == 59]
    assert np.allclose(xs[frames <= 25], right(frames[frames <= 25])) and np.allclose(xs[frames >= 30],
                                                                                         right(frames[frames >= 30]))
    assert len(fixed.track_ids) == 2


@pytest.mark.slow
def test_search_behind_finds_the_hidden_partner_and_keeps_their_shared_crops_out(tmp_path: Path) -> None:
    """A pair side by side, the second mostly hidden: without the search the pose model finds only the first, whose
    sequence is then mostly two people; with it, the partner is found and the shared crops are dropped."""
    from gaitheat.extract import ExtractConfig, extract_video_report
    from gaitheat.tracking_metrics import sequence_purity

    scene = plan_scene("side_by_side", ["101", "102"], frames=30, seed=0, difficulty=0.15, name="s0")
    paths = write_scene(tmp_path, scene)
    _, truth = load_crowd_truth(paths["json"])
    before = extract_video_report(paths["video"], ExtractConfig(search_behind=0))
    after = extract_video_report(paths["video"], ExtractConfig(search_behind=1))
    (shared,) = [sequence_purity(t.sequence.image_keypoints, t.sequence.frame_indices, truth) for t in before.tracks]
    assert shared["person"] == 0 and shared["contaminated"] > 0.5  # the problem: one walker, two people's crops
    assert after.person_frames >= before.person_frames + 15  # the partner, found in most frames
    contaminated = [sequence_purity(t.sequence.image_keypoints, t.sequence.frame_indices, truth)["contaminated"]
                    for t in after.tracks]
    assert all(c <= 0.05 for c in contaminated), contaminated
    # the tracker still followed the walker in front: their MOTChallenge rows are reported without a sequence
    assert len(after.track_rows) >= 20 and any("without another person" in r["reason"] for r in after.rejected_tracks)
