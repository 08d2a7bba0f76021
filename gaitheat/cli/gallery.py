"""`gaitheat gallery list|remove|stats|index|calibrate G`: inspect and maintain a gallery."""

from __future__ import annotations

import argparse
import json
from typing import Any

HELP = "Manage a gallery: list, remove, stats, index, calibrate."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gaitheat.cli.enrol import add_pipeline_arguments

    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="people, their sequences and sources")
    p.add_argument("gallery", metavar="G")
    p = sub.add_parser("remove", help="delete people with all their embeddings")
    p.add_argument("gallery", metavar="G")
    p.add_argument("names", nargs="+", metavar="NAME")
    p = sub.add_parser("stats", help="counts, model checksum, threshold, size")
    p.add_argument("gallery", metavar="G")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("index", help="build the FAISS index now (identify builds it when needed)")
    p.add_argument("gallery", metavar="G")
    p = sub.add_parser("calibrate", help="measure false accepts / rejects on a labelled set; store the threshold")
    p.add_argument("gallery", metavar="G")
    p.add_argument("--from-csv", metavar="FILE", help="name,video rows; include people NOT in the gallery")
    p.add_argument("--embeddings", metavar="NPZ", help="labelled embeddings: arrays 'embeddings' (N,D,P), 'names' (N,)")
    p.add_argument("--target-far", type=float, metavar="F",
                   help="pick the largest threshold with false-accept rate <= F (default: the EER threshold)")
    p.add_argument("--dry-run", action="store_true", help="report only; keep the stored threshold")
    add_pipeline_arguments(p)


def run(args: argparse.Namespace) -> int:
    from gaitheat.cli import UserError
    from gaitheat.gallery.db import GalleryDB, GalleryError

    try:
        with GalleryDB(args.gallery) as db:
            return int(ACTIONS[args.action](db, args))
    except GalleryError as exc:
        raise UserError(str(exc)) from exc


def _list(db, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    people = db.people()
    print(f"{'name':<20} {'sequences':>9}  {'last enrolled':<25} sources")
    for p in people:
        print(f"{p.name:<20} {p.sequences:>9}  {p.last_enrolled:<25} {', '.join(p.sources)}")
    print(f"{len(people)} people, {db.count()} embeddings")
    return 0


def _remove(db, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    for name in args.names:
        print(f"removed {name}: {db.remove(name)} embedding(s)")
    return 0


def _stats(db, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    stats = db.stats()
    if args.json:
        print(json.dumps(stats, indent=1))
    else:
        for key, value in stats.items():
            print(f"{key:<16} {value}")
    return 0


def _index(db, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from gaitheat.gallery.index import build_index

    print(f"index: {build_index(db)}")
    return 0


def _calibrate(db, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    import zipfile

    import numpy as np

    from gaitheat.cli import UserError
    from gaitheat.gallery.index import open_searcher
    from gaitheat.gallery.service import calibrate

    if bool(args.from_csv) == bool(args.embeddings):
        raise UserError("give exactly one of --from-csv FILE or --embeddings NPZ")
    if args.embeddings:
        try:
            with np.load(args.embeddings) as data:
                embeddings, names = data["embeddings"].astype(np.float32), [str(n) for n in data["names"]]
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"{args.embeddings}: need an .npz with 'embeddings' and 'names' ({reason})") from exc
        if embeddings.shape[1:] != db.embedding_shape:
            raise UserError(f"{args.embeddings}: embeddings are {embeddings.shape[1:]}, "
                            f"the gallery holds {db.embedding_shape}")
    else:
        embeddings, names = _embed_labelled(db, args)
    try:
        result = calibrate(db, open_searcher(db), embeddings, names, args.target_far, store=not args.dry_run)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    print(f"{'threshold':>10} {'FAR':>7} {'FRR':>7}")
    for t, far, frr in result.table():
        mark = "  <- chosen" if t == result.chosen else ""
        print(f"{t:>10.4f} {far:>7.3f} {frr:>7.3f}{mark}")
    print(f"probes: {result.known} of enrolled people, {result.strangers} strangers; rank-1 {result.rank1:.3f}")
    print(f"EER {result.eer:.3f} at threshold {result.eer_threshold:.4f}; chosen threshold {result.chosen:.4f} "
          f"({result.rule}){' (dry run: not stored)' if args.dry_run else ', stored in the gallery'}")
    return 0


def _embed_labelled(db, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import numpy as np

    from gaitheat.cli.enrol import load_pipeline, read_pairs_csv
    from gaitheat.gallery.service import extract_tracks, main_track

    embedder, cfg = load_pipeline(args, db)
    pairs = [(name, str(video)) for name, videos in read_pairs_csv(args.from_csv).items() for video in videos]
    # one call, so one pose model for every video; then each video's main walker
    by_video: dict[str, list[Any]] = {}
    for track in extract_tracks([video for _, video in pairs], embedder, cfg, progress=False):
        by_video.setdefault(track.source, []).append(track)
    embeddings, names = [], []
    for name, video in pairs:
        if by_video.get(video):
            embeddings.append(main_track(by_video[video]).embedding)
            names.append(name)
    if not embeddings:
        from gaitheat.cli import UserError

        raise UserError(f"{args.from_csv}: nobody walking was found in any video")
    return np.stack(embeddings), names


ACTIONS = {"list": _list, "remove": _remove, "stats": _stats, "index": _index, "calibrate": _calibrate}
