from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import gaussian_heatmaps

from gaitheat.cli import COMMANDS, main
from gaitheat.storage import HeatmapSequence, SequenceMeta, sequence_path, write_sequence


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: gaitheat " + command)


def test_top_level_help_lists_commands() -> None:
    result = subprocess.run([sys.executable, "-m", "gaitheat", "--help"], capture_output=True, text=True, check=True)
    for command in COMMANDS:
        assert command in result.stdout


def test_index_command_writes_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    for subject in ("001", "002"):
        t = 6
        seq = HeatmapSequence(gaussian_heatmaps(t, rng), np.zeros((t, 17, 3), np.float32), np.arange(t),
                              SequenceMeta(subject, "nm-01", "090"))
        write_sequence(sequence_path(tmp_path, subject, "nm-01", "090"), seq)
    assert main(["index", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 sequences, 2 subjects, 12 frames" in out
    assert (tmp_path / "manifest.csv").read_text().count("\n") == 3


def test_user_error_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_import_export_commands(tmp_path: Path) -> None:
    import pickle

    folder = tmp_path / "pkl/001/nm-01/000"
    folder.mkdir(parents=True)
    heat = gaussian_heatmaps(3, np.random.default_rng(2)).astype(np.float16)
    (folder / "float_000.pkl").write_bytes(pickle.dumps(heat))
    assert main(["import-pkl", str(tmp_path / "pkl"), str(tmp_path / "store")]) == 0
    assert (tmp_path / "store/manifest.csv").is_file()
    assert main(["export-pkl", str(tmp_path / "store"), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out/001/nm-01/000/float_000.pkl").is_file()


def test_identify_refuses_an_unwritable_output_before_any_work(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """--json / --events must be a creatable file: checked first (no gallery, video or model touched)."""
    video = tmp_path / "missing.avi"  # never read: the output check comes first
    for option, out, why in (("--json", tmp_path, "is a folder; give a file name"),
                             ("--json", tmp_path / "nowhere" / "r.json", "does not exist"),
                             ("--events", tmp_path / "nowhere" / "e.jsonl", "does not exist")):
        args = ["identify", "--gallery", str(tmp_path / "g.db"), str(video), option, str(out)]
        if option == "--events":
            args[3] = "0"  # a camera: the live path's own check
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and option in err[0] and why in err[0], err
    assert not (tmp_path / "g.db").exists()
