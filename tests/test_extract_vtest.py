"""The issue's real-video assertion: several distinct people followed through vtest.avi (PETS-2009-style
campus clip from Debian's opencv-doc, which no one here made)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gaitheat.detect import iou_matrix
from gaitheat.extract import ExtractConfig, TrackSequence, extract_video

# The smallest prefix that honestly shows >= 4 people followed for >= 20 frames with default settings
# (people enter and cross each other; 60 frames give 3-4, 100 give 6).
FRAMES = 100


@pytest.fixture(scope="module")
def vtest_tracks(media_dir: Path) -> list[TrackSequence]:
    return extract_video(media_dir / "vtest.avi", ExtractConfig(max_frames=FRAMES))


@pytest.mark.slow
def test_at_least_four_distinct_people_of_twenty_frames(vtest_tracks: list[TrackSequence]) -> None:
    long = [t for t in vtest_tracks if t.sequence.num_frames >= 20]
    assert len(long) >= 4, [t.sequence.num_frames for t in vtest_tracks]
    assert len({t.track_id for t in long}) == len(long)
    # Distinct people, not one person counted twice: in frames two tracks share, their boxes differ.
    for i, a in enumerate(long):
        for b in long[i + 1 :]:
            _, ia, ib = np.intersect1d(a.sequence.frame_indices, b.sequence.frame_indices, return_indices=True)
            if len(ia):
                assert a.sequence.boxes is not None and b.sequence.boxes is not None
                ious = iou_matrix(a.sequence.boxes[ia], b.sequence.boxes[ib]).diagonal()
                assert np.median(ious) < 0.5, (a.track_id, b.track_id)


@pytest.mark.slow
def test_vtest_sequences_are_well_formed(vtest_tracks: list[TrackSequence]) -> None:
    for track in vtest_tracks:
        seq = track.sequence
        seq.validate()
        assert seq.boxes is not None and seq.image_keypoints is not None
        assert seq.meta.subject == "vtest" and seq.meta.extra["track_id"] == track.track_id
        assert np.all(np.diff(seq.frame_indices) > 0) and seq.frame_indices.max() < FRAMES
        assert np.all(seq.keypoints[..., 2].mean(axis=1) >= 0.4)  # the quality filter held
        heights = seq.boxes[:, 3] - seq.boxes[:, 1]
        widths = seq.boxes[:, 2] - seq.boxes[:, 0]
        assert np.allclose(widths / heights, 0.75, atol=1e-3)
        # A walker's box moves smoothly: no jump to another person between consecutive frames.
        centres = (seq.boxes[:, :2] + seq.boxes[:, 2:]) / 2
        steps = np.linalg.norm(np.diff(centres, axis=0), axis=1) / np.diff(seq.frame_indices)
        assert np.median(steps) < 0.1 * np.median(heights)
        # Head above hips above ankles in most frames (image y grows downwards).
        y = seq.image_keypoints[..., 1]
        upright = (y[:, :5].mean(1) < y[:, 11:13].mean(1)) & (y[:, 11:13].mean(1) < y[:, 15:17].mean(1))
        assert upright.mean() > 0.9
        assert track.dropped["frames_kept"] == seq.num_frames


@pytest.mark.slow
def test_vtest_sequences_carry_plausible_silhouettes(vtest_tracks: list[TrackSequence]) -> None:
    # Real people through BlazePose's own segmentation (same invoke): every stored frame has its
    # silhouette, a person-sized white body spanning the 64 rows (no ground truth here; the synthetic
    # benchmark measures the IoU).
    for track in vtest_tracks:
        sils = track.sequence.silhouettes
        assert sils is not None and sils.shape == (track.sequence.num_frames, 64, 44)
        assert set(np.unique(sils)) <= {0, 255}
        body = (sils > 0).mean(axis=(1, 2))
        assert np.mean(body > 0) >= 0.95, body
        assert 0.1 < np.median(body) < 0.6, np.median(body)
        tall = (sils > 0).any(axis=2)
        assert np.mean(tall[:, 0] & tall[:, -1]) >= 0.95  # height normalised: first and last rows used
