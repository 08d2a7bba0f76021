"""`gaitheat demo` end to end at a tiny size: every stage runs for real, reruns reuse finished stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gaitheat.demo import DemoConfig, run_demo
from gaitheat.manifest import load_manifest

TINY = DemoConfig(train_subjects=4, test_subjects=2, views=("072", "090"), train_conditions=("nm-01",),
                  frames=12, frame_stride=2, steps=2, workers=1)


@pytest.mark.slow
def test_tiny_demo_runs_every_stage_and_reuses_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gaitheat import pretrained
    from tests.conftest import write_tiny_checkpoint

    # a "shipped" model of the demo's own: exported by the real exporter into a stand-in weights folder
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path / "weights")
    shipped = pretrained.export_pretrained(write_tiny_checkpoint(tmp_path / "tiny.pt"), tmp_path / "weights")
    out = tmp_path / "demo"
    summary = run_demo(out, TINY, progress=False)
    for key in ("nm_rank1", "bg_rank1", "cl_rank1"):
        assert 0.0 <= summary[key] <= 1.0
    assert "NM" in summary["table"] and "BG" in summary["table"] and "CL" in summary["table"]
    report = Path(summary["report"])
    text = report.read_text()
    assert "CASIA-B protocol" in text and "Identification" in text
    for name in ("casia-b.views.png", "casia-b.cmc.png", "overlay-nm-05.png"):
        assert (report.parent / name).stat().st_size > 1000, name
    ident = summary["identify"]
    assert ident["gallery_people"] == 2
    # the gallery's threshold was calibrated on walks it never enrolled: the test subjects' nm-06,
    # and the training subjects' walks as strangers (up to 2 x 2 and 4 x 2; a short clip may lose its track)
    rows = load_manifest(out / "store")
    known = sum(r.subject in ("005", "006") and r.condition == "nm-06" for r in rows)
    strangers = sum(r.subject in ("001", "002", "003", "004") for r in rows)
    cal = ident["calibration"]
    assert (cal["known_probes"], cal["stranger_probes"]) == (known, strangers) and known >= 3 and strangers >= 7
    assert ident["threshold"] == cal["threshold"] > 0
    # both people ranked, nearest first, and the label is the open-set decision on that ranking
    assert sorted(n for n, _ in ident["top"]) == ["005", "006"]
    assert ident["top"][0][1] <= ident["top"][1][1]
    nearest, distance = ident["top"][0]
    assert ident["label"] == (nearest if distance <= ident["threshold"] else "unknown")
    assert ident["correct"] == (ident["label"] == ident["truth"] == "005")
    assert f"labelled **{ident['label']}**" in text and f"calibrated on {known} walks" in text
    stages = {p.stem: json.loads(p.read_text()) for p in (out / "stages").glob("*.json")}
    assert set(stages) == {"synth", "extract", "train", "evaluate", "gallery", "pretrained", "report"}
    # the shipped model was scored on the demo's test subjects, under the same protocol, and reported
    scored = summary["pretrained"]
    assert scored["sha256"] == shipped.sha256 and all(0.0 <= scored["fractions"][c] <= 1.0 for c in ("NM", "BG", "CL"))
    assert "## Shipped pretrained model on the demo's test subjects" in text and shipped.sha256[:12] in text
    extracted = stages["extract"]["result"]
    assert extracted["failed"] <= 0.1 * extracted["videos"], extracted["failures"]  # a short clip may lose its track

    again = run_demo(out, TINY, progress=False)
    assert again["seconds"] == {name: 0.0 for name in stages}  # every stage reused
    assert again["nm_rank1"] == summary["nm_rank1"]


def test_demo_report_says_in_one_line_when_no_pretrained_model_ships(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from gaitheat import demo, pretrained

    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path / "empty")
    result = demo._pretrained(tmp_path, TINY, progress=False)
    assert result == {"skipped": "no pretrained model ships with this gaitheat (" f"{tmp_path / 'empty'} holds none)"}
    section = demo._pretrained_section(result)
    assert [line for line in section if line.startswith("Skipped")] == [f"Skipped: {result['skipped']}."]


def test_demo_needs_two_views(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="two views"):
        run_demo(tmp_path, DemoConfig(views=("090",)))


def test_cli_demo_help_is_cheap(capsys: pytest.CaptureFixture[str]) -> None:
    from gaitheat.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    assert "--json" in capsys.readouterr().out
