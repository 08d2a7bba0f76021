"""`gaitheat synth`: render synthetic walker videos in the CASIA-B tree (see :mod:`gaitheat.synth`)."""

from __future__ import annotations

import argparse

HELP = "Render synthetic walker videos in the CASIA-B tree (or crowd scenes with --crowd)."

_CONDITIONS = "nm-01,nm-02,nm-03,nm-04,nm-05,nm-06,bg-01,bg-02,cl-01,cl-02"
_VIEWS = ",".join(f"{a:03d}" for a in range(0, 181, 18))


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subjects", type=int, default=None,
                        help="number of people (named 001, 002, ...); required without --plan")
    parser.add_argument("--out", required=True, help="root of the CASIA-B-shaped tree to write")
    parser.add_argument("--views", type=_csv, default=_csv(_VIEWS), help=f"comma-separated views (default {_VIEWS})")
    parser.add_argument("--conditions", type=_csv, default=_csv(_CONDITIONS),
                        help=f"comma-separated conditions (default {_CONDITIONS})")
    parser.add_argument("--frames", type=int, default=40, help="frames per sequence (25 fps; default 40)")
    parser.add_argument("--seed", type=int, default=0, help="population and recording seed (same seed, same bytes)")
    parser.add_argument("--difficulty", type=float, default=0.5,
                        help="0 = people very different .. 1 = people close together (default 0.5)")
    parser.add_argument("--size", default=None,
                        help="frame WIDTHxHEIGHT (default 320x240, CASIA-B's; 480x270 with --crowd)")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes (default 1)")
    plan = parser.add_argument_group("named plans (--plan): a sized build with its partition and heatmap store")
    plan.add_argument("--plan", default=None,
                      help="render and extract a named plan into --out, resumably: pretrain (300 + 50 held-out "
                           "identities, 11 views, normative gait kinematics) or pretrain-tiny; sizes come from "
                           "the plan (--workers still applies)")
    plan.add_argument("--no-extract", action="store_true", help="with --plan: render only, no heatmap store")
    crowd = parser.add_argument_group("crowd scenes (--crowd): several walkers per video, MOTChallenge ground truth")
    crowd.add_argument("--crowd", action="store_true",
                       help="render crowd scenes of people drawn from subjects 001..--subjects instead of the tree")
    crowd.add_argument("--scenes", type=int, default=2, help="scenes per scene type (default 2)")
    crowd.add_argument("--types", type=_csv, default=None,
                       help="comma-separated scene types (default crossing,side_by_side,overtaking,passing_behind)")
    crowd.add_argument("--walkers", default="2-3", help="people per scene, MIN-MAX within 2-8 (default 2-3)")


def _size(text: str) -> tuple[int, int]:
    from gaitheat.cli import UserError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise UserError(f"--size must look like 320x240, got {text!r}") from exc
    if w < 64 or h < 64:
        raise UserError(f"--size {text}: frames must be at least 64x64")
    return h, w


def _run_crowd(args: argparse.Namespace) -> int:
    from gaitheat.cli import UserError
    from gaitheat.synth.crowd import CROWD_SIZE, SCENE_TYPES, write_crowds

    try:
        lo, hi = (int(v) for v in args.walkers.split("-")) if "-" in args.walkers else (int(args.walkers),) * 2
    except ValueError as exc:
        raise UserError(f"--walkers must look like 2-3 or 4, got {args.walkers!r}") from exc
    kinds = args.types or list(SCENE_TYPES)
    unknown = [k for k in kinds if k not in SCENE_TYPES]
    if unknown:
        raise UserError(f"--types: unknown scene types {unknown}; known: {list(SCENE_TYPES)}")
    if args.scenes < 1:
        raise UserError("--scenes must be >= 1")
    size = CROWD_SIZE if args.size is None else _size(args.size)
    try:
        counts = write_crowds(args.out, args.scenes, kinds, (lo, hi), args.subjects, frames=args.frames,
                              seed=args.seed, difficulty=args.difficulty, size=size)
    except ValueError as exc:  # walkers outside 2-8, more walkers than subjects
        raise UserError(str(exc)) from exc
    print(f"synth --crowd: {counts['written']} scenes written, {counts['skipped']} already there, in {args.out}")
    return 0


def _run_plan(args: argparse.Namespace) -> int:
    from gaitheat.cli import UserError
    from gaitheat.synth.plan import build_plan, get_plan

    if args.crowd or args.subjects is not None:
        raise UserError("--plan fixes the subjects and sizes itself: drop --crowd / --subjects")
    try:
        plan = get_plan(args.plan)
        counts = build_plan(args.out, plan, workers=max(1, args.workers), extract=not args.no_extract)
    except ValueError as exc:  # unknown plan, or --out holds another plan's build
        raise UserError(str(exc)) from exc
    print(f"synth --plan {plan.name}: {counts['written']} videos written, {counts['skipped']} already there "
          f"(of {counts['videos_planned']}); extraction {counts['extracted']} done, {counts['extract_skipped']} "
          f"already there, {counts['extract_failed']} failed; in {args.out}")
    return 0


def run(args: argparse.Namespace) -> int:
    from gaitheat.cli import UserError
    from gaitheat.synth import write_dataset

    if args.plan is not None:
        return _run_plan(args)
    if args.subjects is None:
        raise UserError("--subjects is required (or name a --plan)")
    if args.crowd:
        if args.subjects < 2 or args.frames < 1 or not 0.0 <= args.difficulty <= 1.0:
            raise UserError("--crowd needs --subjects >= 2, --frames >= 1 and --difficulty in [0, 1]")
        return _run_crowd(args)
    if args.subjects < 1:
        raise UserError("--subjects must be >= 1")
    if args.frames < 1:
        raise UserError("--frames must be >= 1")
    if not 0.0 <= args.difficulty <= 1.0:
        raise UserError(f"--difficulty must be in [0, 1], got {args.difficulty}")
    bad = [v for v in args.views if not v.isdigit()]
    if bad:
        raise UserError(f"--views must be angles like 000,090,180; got {bad}")
    try:
        counts = write_dataset(args.out, args.subjects, args.conditions, args.views, frames=args.frames,
                               seed=args.seed, difficulty=args.difficulty, size=_size(args.size or "320x240"),
                               workers=max(1, args.workers))
    except ValueError as exc:  # e.g. a condition outside nm/bg/cl
        raise UserError(str(exc)) from exc
    print(f"synth: {counts['written']} sequences written, {counts['skipped']} already there, in {args.out}")
    return 0
