"""`gaitheat enrol`: walking videos of named people -> embeddings in a SQLite gallery.

Each person's videos are extracted and embedded first, then stored in one transaction, so an
interrupted enrolment leaves the gallery as it was. In each video the longest tracked person is the
one enrolled. This module also holds the options ``identify`` and ``gallery calibrate`` share.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

HELP = "Enrol people into a gallery from their walking videos."



def add_pipeline_arguments(parser: argparse.ArgumentParser, checkpoint_required: bool = False) -> None:
    """--checkpoint, extraction config and device options (shared with identify and calibrate)."""
    parser.add_argument("--checkpoint", required=checkpoint_required, metavar="CKPT",
                        help="trained checkpoint (.pt) or exported weights (.safetensors)" + (
                            "" if checkpoint_required else " (default: the one the gallery was built with, "
                            "else the shipped pretrained model)"))
    parser.add_argument("--extract-config", metavar="YAML", help="ExtractConfig YAML for the extraction step")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="ExtractConfig override (repeatable), e.g. --set frame_stride=2")
    parser.add_argument("--device", default=None, help="torch device for the network (default: cuda if available)")
    parser.add_argument("--backend", choices=["torch", "onnx"], default=None,
                        help="embed with PyTorch or with ONNX Runtime (default: onnx when --onnx is given)")
    parser.add_argument("--onnx", metavar="MODEL.onnx", help="`gaitheat export-onnx` file of the same checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def load_pipeline(args: argparse.Namespace, db: Any) -> tuple[Any, Any]:
    """(Embedder, ExtractConfig) from the shared options; checks the checkpoint against the gallery."""
    from gaitheat.cli import UserError
    from gaitheat.config import load_config
    from gaitheat.extract import ExtractConfig
    from gaitheat.gallery.db import ModelMismatchError
    from gaitheat.gallery.service import load_embedder

    try:
        cfg = load_config(ExtractConfig, args.extract_config, args.set)
    except ValueError as exc:  # ExtractConfig validates its values in __post_init__
        raise UserError(f"extraction config: {exc}") from exc
    backend = getattr(args, "backend", None) or ("onnx" if getattr(args, "onnx", None) else "torch")
    recorded = db.meta().get("checkpoint") if db is not None else None
    checkpoint: str = args.checkpoint or ""
    if backend == "onnx":
        candidate = args.checkpoint or recorded
        checkpoint = str(args.onnx or (candidate if str(candidate).endswith(".onnx") else ""))
        if not checkpoint:
            raise UserError("--backend onnx needs --onnx MODEL.onnx (made by `gaitheat export-onnx`)")
    elif not checkpoint:
        checkpoint = default_model(db, recorded)
    if not Path(checkpoint).is_file():
        raise UserError(f"{checkpoint}: no such checkpoint")
    try:
        embedder = load_embedder(checkpoint, args.device)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if db is not None:
        try:
            db.check_model(embedder.sha256)
        except ModelMismatchError as exc:
            raise UserError(str(exc)) from exc
    return embedder, cfg


def default_model(db: Any, recorded: str | None) -> str:
    """The model to use without ``--checkpoint``: the gallery's own, else the shipped pretrained one.

    * the gallery recorded a checkpoint that is still there: that one (its fingerprint is pinned);
    * the gallery is new (or has none pinned), or was built with the shipped model (same SHA-256,
      e.g. recorded at another install's path): the shipped model, announced once;
    * otherwise: an error asking for ``--checkpoint`` (the gallery's model is gone, or none ships).
    """
    from gaitheat.cli import UserError
    from gaitheat.pretrained import announce_default, no_model_message, shipped_model

    shipped = shipped_model()
    if recorded and Path(recorded).is_file():
        if shipped is not None and Path(recorded).resolve() == shipped.weights.resolve():
            announce_default(shipped)  # the gallery's model is the shipped one: still say which
        return recorded
    pinned = db.model_sha256 if db is not None else None
    if shipped is not None and (pinned is None or pinned == shipped.sha256):
        announce_default(shipped)
        return str(shipped.weights)
    if pinned is not None:
        where = f"recorded at {recorded}, which is gone" if recorded else "path not recorded"
        raise UserError(f"--checkpoint is needed: the gallery was built with model {pinned[:12]}... ({where})"
                        + ("" if shipped is None else f", not the shipped {shipped.name} ({shipped.sha256[:12]}...)"))
    raise UserError(no_model_message())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="*", metavar="VIDEO", help="videos (or .ghs heatmap files) of --name")
    parser.add_argument("--gallery", required=True, metavar="G", help="gallery database (created if missing)")
    parser.add_argument("--name", help="the person walking in VIDEO...")
    parser.add_argument("--from-csv", metavar="FILE", help="CSV of name,video rows (header optional)")
    parser.add_argument("--from-folder", metavar="DIR", help="DIR/<name>/<videos>: one subfolder per person")
    add_pipeline_arguments(parser)


def read_pairs_csv(path: str | Path) -> dict[str, list[Path]]:
    """name,video rows -> {name: [videos]}; relative video paths are relative to the CSV's folder."""
    from gaitheat.cli import UserError

    path = Path(path)
    people: dict[str, list[Path]] = {}
    try:
        with open(path, newline="") as handle:
            for i, row in enumerate(csv.reader(handle), start=1):
                if not row or row[0].strip().startswith("#"):
                    continue
                if len(row) < 2:
                    raise UserError(f"{path}:{i}: expected name,video, got {row!r}")
                name, video = row[0].strip(), row[1].strip()
                if i == 1 and (name.lower(), video.lower()) == ("name", "video"):
                    continue
                file = Path(video) if Path(video).is_absolute() else path.parent / video
                people.setdefault(name, []).append(file)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from exc
    return people


def read_people_folder(folder: str | Path) -> dict[str, list[Path]]:
    from gaitheat.cli import UserError

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder")
    from gaitheat.storage import SUFFIX
    from gaitheat.video import VIDEO_SUFFIXES

    inputs = VIDEO_SUFFIXES | {SUFFIX}
    return {d.name: sorted(f for f in d.iterdir() if f.suffix.lower() in inputs or f.is_dir())
            for d in sorted(folder.iterdir()) if d.is_dir()}


def people_from_args(args: argparse.Namespace) -> dict[str, list[Path]]:
    from gaitheat.cli import UserError

    modes = sum(bool(m) for m in (args.name, args.from_csv, args.from_folder))
    if modes != 1:
        raise UserError("give exactly one of --name NAME VIDEO..., --from-csv FILE or --from-folder DIR")
    if args.name:
        if not args.videos:
            raise UserError("--name needs at least one VIDEO")
        people = {args.name: [Path(v) for v in args.videos]}
    else:
        if args.videos:
            raise UserError("VIDEO arguments go with --name only")
        people = read_pairs_csv(args.from_csv) if args.from_csv else read_people_folder(args.from_folder)
    people = {n: v for n, v in people.items() if v}
    if not people:
        raise UserError("nobody to enrol: no videos found")
    missing = [str(v) for vs in people.values() for v in vs if not v.exists()]
    if missing:
        raise UserError(f"no such video: {', '.join(missing[:5])}")
    return people


def run(args: argparse.Namespace) -> int:
    from gaitheat.cli import UserError
    from gaitheat.extract import build_pose
    from gaitheat.gallery.db import GalleryDB, GalleryError
    from gaitheat.gallery.service import Track, enrol_tracks, extract_tracks

    people = people_from_args(args)
    try:
        # Everyone is extracted and embedded before the gallery is written (or even created): a
        # corrupt input, or a person nobody was found for, leaves the gallery exactly as it was.
        existing = GalleryDB(args.gallery) if Path(args.gallery).exists() else None
        try:
            embedder, cfg = load_pipeline(args, existing)
        finally:
            if existing is not None:
                existing.close()
        pose = None  # one pose model for everyone, loaded at the first video (not for .ghs inputs)
        found: dict[str, list[Track]] = {}
        for name, videos in people.items():
            if pose is None and any(Path(v).suffix != ".ghs" for v in videos):
                pose = build_pose(cfg)
            found[name] = extract_tracks(videos, embedder, cfg, progress=not args.no_progress, pose=pose)
            if not found[name]:
                raise GalleryError(args.gallery, f"nobody walking was found in the videos for {name!r}; "
                                                 "nothing enrolled")
        with GalleryDB(args.gallery, create=True) as db:
            for name, tracks in found.items():
                ids = enrol_tracks(db, name, tracks, embedder)
                print(f"enrolled {name}: {len(ids)} sequence(s) from {len(people[name])} video(s)")
            print(f"gallery {db.path}: {db.people_count()} people, {db.count()} embeddings")
    except GalleryError as exc:
        raise UserError(str(exc)) from exc
    return 0
