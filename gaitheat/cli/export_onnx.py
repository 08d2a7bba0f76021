"""`gaitheat export-onnx CKPT OUT.onnx`: the retrieval network as ONNX, checked against PyTorch.

The graph takes raw heatmaps ``(B, T, 17, 64, 48)`` with a dynamic number of frames T and returns
the ``(B, D, P)`` embedding; normalisation and PGHA alignment are inside (see
:mod:`gaitheat.export_onnx`). Use it with ``identify`` / ``enrol`` / ``evaluate --backend onnx``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gaitheat.cli import UserError

HELP = "Export a checkpoint's recognition network to ONNX (checked with ONNX Runtime; optional int8)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, metavar="CKPT", help="training checkpoint (.pt)")
    parser.add_argument("out", type=Path, metavar="OUT.onnx", help="ONNX file to write")
    parser.add_argument("--int8", action="store_true",
                        help="also write OUT.int8.onnx, dynamically quantised by ONNX Runtime (approximate)")


def run(args: argparse.Namespace) -> int:
    from gaitheat.export_onnx import export_onnx, int8_path_for

    if not args.checkpoint.is_file():
        raise UserError(f"{args.checkpoint}: no such checkpoint file")
    if args.out.suffix.lower() != ".onnx":
        raise UserError(f"{args.out}: the output name must end in .onnx")
    if not args.out.parent.is_dir():
        raise UserError(f"{args.out.parent}: no such folder")
    try:
        report = export_onnx(args.checkpoint, args.out, int8=args.int8)
    except ValueError as exc:  # names the checkpoint or the ONNX file
        raise UserError(str(exc)) from exc
    meta = report.metadata
    print(f"wrote {report.path}: model {meta['gaitheat.model']}, input heatmaps (batch, frames, 17, 64, 48), "
          f"embedding {meta['gaitheat.embedding_shape']}, distance {meta['gaitheat.distance']}, "
          f"checkpoint sha256 {meta['gaitheat.checkpoint_sha256'][:12]}")
    print(f"ONNX Runtime vs PyTorch: max |diff| {report.max_abs_diff:.1e} at T = "
          f"{', '.join(map(str, report.check_frames))} frames")
    if report.int8_path:
        assert report.int8_max_abs_diff is not None
        print(f"wrote {int8_path_for(args.out)}: int8 dynamic quantisation, max |diff| to PyTorch "
              f"{report.int8_max_abs_diff:.3f} (embeddings are unit per strip)")
    return 0
