"""`gaitheat show`: draw a stored sequence's crop boxes and heatmaps to a PNG or GIF."""

from __future__ import annotations

import argparse

HELP = "Draw a stored sequence's crop boxes and heatmaps to a PNG or GIF."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sequence", metavar="SEQUENCE", help="a .ghs sequence file")
    parser.add_argument("--out", required=True, metavar="FILE", help="output .png (frames stacked) or .gif (animated)")
    parser.add_argument("--frames", type=int, default=6, help="frames in a PNG (default 6)")
    parser.add_argument("--source", metavar="PATH", help="the source video, if it moved since extraction")


def run(args: argparse.Namespace) -> int:
    from gaitheat.cli import UserError
    from gaitheat.show import render_preview
    from gaitheat.storage import StoreError, read_sequence

    try:
        seq = read_sequence(args.sequence)
        out = render_preview(seq, args.out, frames=max(1, args.frames), source=args.source)
    except (StoreError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    print(f"wrote {out} ({seq.num_frames} frames, {seq.meta.subject}/{seq.meta.condition}/{seq.meta.view})")
    return 0
