"""Named synthesis plans: data builds far beyond the demo's (``gaitheat synth --plan NAME --out DIR``).

A plan fixes who is rendered (training and held-out identities), under which conditions and views,
how (frames, frame rate, size, difficulty, motion model, seed), and the extraction settings, so
the data of a recipe is one command. ``pretrain`` is the training set of the shipped model
(issue 16): 300 training and 50 held-out identities, all 11 CASIA-B views, legs driven by
published normative gait kinematics (:func:`gaitheat.synth.walker.sample_kinematics`).

Layout of ``DIR``::

    DIR/plan.json        the plan (a later run with another plan is refused: nothing is mixed)
    DIR/partition.json   {"TRAIN_SET": [...], "TEST_SET": [...]}: the CASIA-B partition layout
    DIR/videos/          the CASIA-B-shaped tree of walker videos (:func:`gaitheat.synth.write_dataset`)
    DIR/store/           the heatmap store (:func:`gaitheat.extract_store.extract_to_store`)

The build runs in rounds of ``round_subjects`` training identities (with their share of held-out
ones): render the round's videos, then extract them. Both steps skip finished work (a video is
done when its video, ground truth and mask files exist; an extraction when its done marker
matches), so a killed build resumes where it stopped, and a partly built store already trains
(its first rounds are complete identities).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gaitheat.atomic import atomic_write_text
from gaitheat.synth import scene as S

log = logging.getLogger(__name__)

_CREATED = "2024-01-01T00:00:00+00:00"  # fixed store stamp: a rebuild gives the same bytes


@dataclass(frozen=True)
class SynthPlan:
    """What a plan renders and extracts.

    Attributes:
        name: the plan's name (``gaitheat synth --plan NAME``).
        train_subjects: identities the network learns from (named ``001`` ...).
        test_subjects: held-out identities after them (the partition's TEST_SET).
        views: camera views for everybody.
        train_conditions: conditions recorded for training identities.
        test_conditions: conditions recorded for held-out identities (all ten: the CASIA-B protocol's
            gallery nm-01..04 and probes nm-05/06, bg-01/02, cl-01/02).
        frames: frames per video.
        fps: frame rate of the rendered walk and the video file.
        size: frame (H, W).
        difficulty: how close identities are, 0 .. 1 (the demo uses 0.15).
        seed: population and recording seed (different from the demo's 0: other people).
        motion: ``normative`` (published joint-angle curves) or ``parametric`` (the demo's legs).
        round_subjects: training identities per render-then-extract round.
    """

    name: str
    train_subjects: int
    test_subjects: int
    views: tuple[str, ...] = S.VIEWS
    train_conditions: tuple[str, ...] = ("nm-01", "nm-02", "bg-01", "cl-01")
    test_conditions: tuple[str, ...] = S.CONDITIONS
    frames: int = 20
    fps: float = 12.5
    size: tuple[int, int] = (240, 320)
    difficulty: float = 0.15
    seed: int = 1016
    motion: str = "normative"
    round_subjects: int = 25

    def subjects(self) -> tuple[list[str], list[str]]:
        """(train, held-out) subject names; held-out ones come after the training ones, like CASIA-B."""
        total = self.train_subjects + self.test_subjects
        if total > 999:
            raise ValueError(f"plan {self.name}: CASIA-B names have 3 digits, at most 999 subjects, got {total}")
        names = [f"{i:03d}" for i in range(1, total + 1)]
        return names[:self.train_subjects], names[self.train_subjects:]

    def rounds(self) -> list[tuple[list[str], list[str]]]:
        """(train, held-out) subjects of each round; the held-out identities are spread over the rounds."""
        train, test = self.subjects()
        count = max(1, -(-len(train) // self.round_subjects))
        return [(train[i * self.round_subjects:(i + 1) * self.round_subjects],
                 test[i * len(test) // count:(i + 1) * len(test) // count]) for i in range(count)]

    def videos(self) -> int:
        """Videos the whole plan renders."""
        per_view = self.train_subjects * len(self.train_conditions) + self.test_subjects * len(self.test_conditions)
        return len(self.views) * per_view

    def render_settings(self) -> dict[str, Any]:
        """How every video of the plan is rendered: :func:`gaitheat.synth.write_dataset` keywords other than
        the subjects, conditions, workers and progress (render any subset exactly as the build does)."""
        return dict(views=self.views, frames=self.frames, seed=self.seed, difficulty=self.difficulty, size=self.size,
                    motion=self.motion, fps=self.fps)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``plan.json`` holds)."""
        return dataclasses.asdict(self)


PLANS: dict[str, SynthPlan] = {
    "pretrain": SynthPlan("pretrain", train_subjects=300, test_subjects=50),
    # the same recipe at a size that builds in about a minute: tests and smoke runs of the recipe
    "pretrain-tiny": SynthPlan("pretrain-tiny", train_subjects=4, test_subjects=2, views=("000", "090", "180"),
                               train_conditions=("nm-01", "bg-01"), frames=12, round_subjects=2),
}


def get_plan(name: str) -> SynthPlan:
    """The plan called ``name``; ValueError listing the known ones otherwise."""
    try:
        return PLANS[name]
    except KeyError:
        raise ValueError(f"unknown synth plan {name!r}; known: {sorted(PLANS)}") from None


def extract_config(plan: SynthPlan) -> Any:
    """The extraction settings of a plan: every frame (the plan's frame rate is already sparse), fixed stamp.

    Every plan video holds exactly one walker, so a second "person" is always a false detection (a
    swinging bag, a few frames of a background blotch): dropping the frames it overlaps
    (``drop_crowded``, right for real footage) only lost walks (1 of 44 videos of one identity,
    measured), never protected one.
    """
    from gaitheat.extract import ExtractConfig

    return ExtractConfig(frame_stride=1, min_frames=max(4, plan.frames // 2), drop_crowded=False, created=_CREATED)


def _claim(root: Path, plan: SynthPlan) -> None:
    """Write ``plan.json`` and ``partition.json``, or check that ``root`` was started with this plan."""
    path = root / "plan.json"
    wanted = json.loads(json.dumps(plan.to_dict()))  # tuples as lists, as read back
    if path.is_file():
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: unreadable plan file ({exc})") from exc
        if found != wanted:
            changed = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
            raise ValueError(f"{path}: {root} was started with another plan (differs in {changed}); "
                             "use another folder or remove it")
    else:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(wanted, indent=1))
    train, test = plan.subjects()
    atomic_write_text(root / "partition.json", json.dumps({"TRAIN_SET": train, "TEST_SET": test}, indent=1))


def build_plan(out: str | Path, plan: SynthPlan, workers: int = 1, extract: bool = True,
               progress: bool = True) -> dict[str, Any]:
    """Render (and extract) ``plan`` into ``out``, resuming whatever an earlier run finished.

    Args:
        out: the build folder (see the module docstring for its layout).
        plan: what to build.
        workers: processes for rendering and for extraction.
        extract: also extract each round's videos into ``out/store``.
        progress: bars on a terminal, a periodic line otherwise.
    Returns:
        counts: videos written / already there, extraction done / skipped / failed, rounds.
    Raises:
        ValueError: ``out`` holds another plan's build.
    """
    from gaitheat.synth.dataset import write_dataset

    root = Path(out)
    _claim(root, plan)
    videos, store = root / "videos", root / "store"
    totals = {"written": 0, "skipped": 0, "extracted": 0, "extract_skipped": 0, "extract_failed": 0}
    rounds = plan.rounds()
    common = dict(plan.render_settings(), workers=workers, progress=progress)
    for index, (train, test) in enumerate(rounds, start=1):
        started = time.perf_counter()
        for names, conditions in ((train, plan.train_conditions), (test, plan.test_conditions)):
            if names:
                counts = write_dataset(videos, names, conditions, **common)  # type: ignore[arg-type]
                totals["written"] += counts["written"]
                totals["skipped"] += counts["skipped"]
        if extract:
            from gaitheat.extract_store import extract_to_store

            summary = extract_to_store([videos / s for s in train + test], store, extract_config(plan),
                                       workers=workers, progress=progress)
            totals["extracted"] += summary["done"]
            totals["extract_skipped"] += summary["skipped"]
            totals["extract_failed"] += summary["failed"]
            for failure in summary["failures"][:3]:
                log.warning("synth --plan %s: extraction failed: %s", plan.name, failure.get("error", failure))
        log.info("synth --plan %s: round %d/%d (subjects %s..%s) done in %.0f s; so far %s", plan.name, index,
                 len(rounds), (train + test)[0], (train + test)[-1], time.perf_counter() - started, totals)
    if extract:
        from gaitheat.manifest import load_manifest

        load_manifest(store, rebuild=True)
    return totals | {"rounds": len(rounds), "videos_planned": plan.videos()}
