"""`gaitheat evaluate`: evaluate a checkpoint under a benchmark or custom protocol, or compare two runs.

Examples::

    gaitheat evaluate --checkpoint runs/casia-b/checkpoints/last.pt --data-root /data/casia-b-heat
    gaitheat evaluate --checkpoint runs/casia-b/checkpoints/last.pt --data-root /data/ccpg-heat --protocol ccpg
    torchrun --nproc-per-node 4 -m gaitheat evaluate --checkpoint ... --data-root ...
    gaitheat evaluate --compare a.json b.json

The config is the checkpoint's own, then ``--config`` (a YAML whose sections replace it), then
``--set`` overrides. Reports go next to the checkpoint (or into ``--out``):
``<checkpoint stem>.<protocol>.{json,csv,views.png,cmc.png}``. Without ``--checkpoint`` the
pretrained model shipped in the package is evaluated (:mod:`gaitheat.pretrained`; said once), its
reports going to the current folder unless ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gaitheat.cli import UserError

HELP = "Evaluate a checkpoint with an official or custom protocol and write reports."
PROTOCOLS = ("casia-b", "ccpg", "sustech1k", "custom")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="checkpoint .pt written by `gaitheat train`, or exported weights "
                        "(.safetensors); default: the shipped pretrained model")
    parser.add_argument("--data-root", help="heatmap store to evaluate on (default: data.root of the config)")
    parser.add_argument("--protocol", choices=PROTOCOLS, help="evaluation protocol (default: eval.protocol)")
    parser.add_argument("--config", help="experiment YAML (or shipped name) overriding the checkpoint's config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. eval.distance=cos (repeatable)")
    parser.add_argument("--out", help="folder for the reports (default: next to the checkpoint; the current "
                        "folder for the shipped model)")
    parser.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--allow-incomplete", action="store_true",
                        help="evaluate a store that lacks test subjects, conditions or views of the protocol's "
                        "partition, or holds unreadable files; the report lists what was left out "
                        "(eval.allow_incomplete)")
    parser.add_argument("--backend", choices=["torch", "onnx"], default=None,
                        help="embed with PyTorch or with ONNX Runtime (default: onnx when --onnx is given)")
    parser.add_argument("--onnx", metavar="MODEL.onnx", help="`gaitheat export-onnx` file of --checkpoint")
    parser.add_argument("--json", action="store_true",
                        help="also print the results as one JSON object on the last line of stdout")
    parser.add_argument("--compare", nargs=2, metavar=("A_JSON", "B_JSON"),
                        help="print two result JSONs side by side instead of evaluating")


def _compose_config(args: argparse.Namespace) -> object:
    """Checkpoint config <- --config sections <- --set overrides <- --protocol / --data-root."""
    import yaml

    from gaitheat.checkpoint import read_checkpoint
    from gaitheat.config import ConfigError, apply_overrides, from_dict, resolve_config_path, yaml_error
    from gaitheat.experiment import ExperimentConfig, migrate_config

    try:
        data = dict(read_checkpoint(args.checkpoint)["config"])
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if args.config:
        path = resolve_config_path(args.config)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({yaml_error(exc)})") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        try:  # an older layout (loss settings under train) merges into the model section
            loaded = migrate_config(loaded)
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        for section, values in loaded.items():
            data[section] = {**data.get(section, {}), **(values or {})} if isinstance(values, dict) else values
    overrides = list(args.overrides)
    if args.protocol:
        overrides.append(f"eval.protocol={args.protocol}")
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    if args.allow_incomplete:
        overrides.append("eval.allow_incomplete=true")
    return from_dict(ExperimentConfig, apply_overrides(data, overrides))


def run(args: argparse.Namespace) -> int:
    from gaitheat import report

    if args.compare:
        try:
            a, b = (report.load_results(p) for p in args.compare)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        print(report.format_compare(a, b, [Path(p).name for p in args.compare]))
        return 0
    shipped = not args.checkpoint
    if shipped:  # the pretrained model inside the package, if one ships
        from gaitheat.pretrained import announce_default, no_model_message, shipped_model

        model = shipped_model()
        if model is None:
            raise UserError(f"{no_model_message()} (or --compare A.json B.json)")
        announce_default(model)
        args.checkpoint = str(model.weights)
    if not Path(args.checkpoint).is_file():
        raise UserError(f"{args.checkpoint}: no such checkpoint file")

    from gaitheat.evaluate import evaluate_checkpoint
    from gaitheat.experiment import ExperimentConfig
    from gaitheat.storage import StoreError

    cfg = _compose_config(args)
    assert isinstance(cfg, ExperimentConfig)
    if args.backend == "onnx" and not args.onnx:
        raise UserError("--backend onnx needs --onnx MODEL.onnx (made by `gaitheat export-onnx`)")
    onnx = args.onnx if args.backend != "torch" else None
    try:
        results = evaluate_checkpoint(args.checkpoint, cfg, device=args.device, progress=not args.no_progress,
                                      onnx=onnx)
    except (ValueError, StoreError) as exc:  # both name the file at fault
        raise UserError(str(exc)) from exc
    if results is None:  # not rank 0 under torchrun
        return 0
    print(report.format_results(results))
    ckpt = Path(args.checkpoint)
    # never into the installed package: the shipped model's reports go to the current folder
    out_dir = Path(args.out) if args.out else Path.cwd() if shipped else ckpt.parent
    paths = report.write_reports(results, out_dir, f"{ckpt.stem}.{results['protocol']}")
    print("\nwrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    if args.json:
        import json

        # the strict JSON just written (NaN -> null), on one line
        print(json.dumps(json.loads(paths["json"].read_text())))
    return 0
