"""Gallery storage and search: real SQLite (WAL, a real SIGKILL mid-enrolment) and real FAISS."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gaitheat.gallery.db import GalleryDB, GalleryError, ModelMismatchError, SequenceSource
from gaitheat.gallery.index import current_index, open_searcher
from gaitheat.gallery.search import ExactSearcher, FaissParams, FaissSearcher, build_faiss_index, exact_topk
from gaitheat.gallery.service import UNKNOWN, decide, open_set_curve
from gaitheat.gallery.simulate import EmbeddingSimulator

SHA_A = "a" * 64
SHA_B = "b" * 64


def _items(vectors: np.ndarray, source: str = "walk.avi") -> list[tuple[np.ndarray, SequenceSource]]:
    return [(v, SequenceSource(f"{source}#{i}", i, 30)) for i, v in enumerate(vectors)]


def _filled(path: Path, people: int = 3, per: int = 2, shape: tuple[int, int] = (8, 4)) -> GalleryDB:
    sim = EmbeddingSimulator(dim=shape[0], parts=shape[1], latent=6, seed=1)
    db = GalleryDB(path, create=True)
    for p in range(people):
        db.enrol(f"person{p}", _items(sim.sequences(np.full(per, p), stream=p)), SHA_A, "ckpt.pt")
    return db


def test_strip_distance_matches_definition() -> None:
    rng = np.random.default_rng(0)
    q, g = rng.standard_normal((3, 5, 4)), rng.standard_normal((7, 5, 4))
    d, rows = exact_topk(q.astype(np.float32), g.astype(np.float32), k=7, chunk=3)
    brute = np.linalg.norm(q[:, None] - g[None], axis=2).mean(-1)  # (Q, N): mean over P of per-strip L2
    np.testing.assert_allclose(d, np.sort(brute, axis=1), rtol=1e-5)
    np.testing.assert_array_equal(rows, np.argsort(brute, axis=1))


def test_cosine_gallery_is_searched_by_cosine_distance_exact_and_faiss(tmp_path: Path) -> None:
    # strips of very different norms: the Euclidean and the cosine nearest neighbours differ
    rng = np.random.default_rng(3)
    gallery = (rng.standard_normal((40, 6, 3)) * rng.uniform(0.1, 10.0, (40, 1, 3))).astype(np.float32)
    probe = (rng.standard_normal((5, 6, 3)) * rng.uniform(0.1, 10.0, (5, 1, 3))).astype(np.float32)
    norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731 (per strip, over D)
    brute = 1.0 - np.einsum("qdp,ndp->qn", norm(probe), norm(gallery)) / 3  # 1 - mean_p cos_p
    want = np.argsort(brute, axis=1)[:, :4]
    d, rows = ExactSearcher(gallery, chunk=7, metric="cos").search(probe, 4)
    np.testing.assert_array_equal(rows, want)
    np.testing.assert_allclose(d, np.take_along_axis(brute, want, 1), atol=1e-5)
    assert not np.array_equal(ExactSearcher(gallery).search(probe, 4)[1], want)  # Euclidean would differ
    build_faiss_index(_chunks(gallery, 9), len(gallery), (6, 3), tmp_path / "cos", FaissParams(candidates=4),
                      metric="cos")  # only 4 candidates: L2 on unit strips must already order them right
    d, rows = FaissSearcher(tmp_path / "cos").search(probe, 4)
    np.testing.assert_array_equal(rows, want)
    np.testing.assert_allclose(d, np.take_along_axis(brute, want, 1), atol=1e-5)
    # a gallery records the distance of the model that filled it; open_searcher searches with it
    with GalleryDB(tmp_path / "g.db", create=True) as db:
        db.enrol("a", _items(gallery[:20]), SHA_A, "ckpt.pt", distance="cos-strip-mean")
        db.enrol("b", _items(gallery[20:]), SHA_A, "ckpt.pt", distance="cos-strip-mean")
        for kind in ("exact", "faiss"):
            name, dist = open_searcher(db, kind).top_people(probe[0], 1)[0]  # type: ignore[arg-type]
            assert name == ("a" if want[0, 0] < 20 else "b") and dist == pytest.approx(brute[0, want[0, 0]], abs=1e-5)


def test_enrol_list_remove_and_generation(tmp_path: Path) -> None:
    with _filled(tmp_path / "g.db") as db:
        assert [p.name for p in db.people()] == ["person0", "person1", "person2"]
        assert db.count() == 6 and db.generation == 3
        assert db.people()[0].sequences == 2
        matrix = db.load_matrix()
        assert matrix.vectors.shape == (6, 8, 4) and matrix.names[matrix.person_index[-1]] == "person2"
        assert db.remove("person1") == 2
        assert db.count() == 4 and db.generation == 4
        with pytest.raises(GalleryError, match="no person named"):
            db.remove("person1")
        stats = db.stats()
        assert stats["people"] == 2 and stats["embedding_shape"] == "8x4" and stats["model_sha256"] == SHA_A


def test_missing_gallery_and_garbage_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match="no such gallery"):
        GalleryDB(tmp_path / "none.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(GalleryError, match=r"junk\.db"):
        GalleryDB(junk)
    assert junk.read_bytes().startswith(b"this is not sqlite")  # nothing overwritten


def test_mixing_models_or_shapes_is_refused(tmp_path: Path) -> None:
    with _filled(tmp_path / "g.db") as db:
        before = (db.count(), db.generation)
        with pytest.raises(ModelMismatchError, match=r"holds embeddings of model aaaaaaaaaaaa.*bbbbbbbbbbbb"):
            db.enrol("mallory", _items(np.ones((1, 8, 4), np.float32)), SHA_B)
        with pytest.raises(ModelMismatchError, match="holds 8x4 embeddings, got 8x5"):
            db.enrol("mallory", _items(np.ones((1, 8, 5), np.float32)), SHA_A)
        assert (db.count(), db.generation) == before
        assert "mallory" not in [p.name for p in db.people()]


def test_a_bad_item_rolls_back_the_whole_enrolment(tmp_path: Path) -> None:
    with _filled(tmp_path / "g.db") as db:
        good = np.ones((2, 8, 4), np.float32)
        bad = np.full((1, 8, 4), np.nan, np.float32)
        with pytest.raises(GalleryError, match="finite"):
            db.enrol("eve", _items(np.concatenate([good, bad])), SHA_A)
        assert db.count() == 6 and "eve" not in [p.name for p in db.people()]


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    from gaitheat.gallery.db import GalleryDB, SequenceSource

    def items():
        rng = np.random.default_rng(0)
        for i in range(1000):  # 1000 x 4 KB: more than SQLite's page cache, so pages spill to the WAL
            yield rng.standard_normal((64, 16)).astype(np.float32), SequenceSource(f"v{i}.avi", i, 30)
        print("inside", flush=True)
        time.sleep(60)  # killed here, mid-transaction

    db = GalleryDB(sys.argv[1])
    db.enrol("victim", items(), "a" * 64)
""")


def test_sigkill_mid_enrolment_leaves_the_gallery_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    with GalleryDB(path, create=True) as db:
        db.enrol("alice", _items(np.ones((2, 64, 16), np.float32)), SHA_A)
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "inside"
        wal = path.with_name(path.name + "-wal")
        assert wal.stat().st_size > 2_000_000  # the half-written enrolment really is on disk
        with GalleryDB(path) as reader:  # a concurrent reader sees the committed state, unblocked
            assert reader.count() == 2 and [p.name for p in reader.people()] == ["alice"]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    with GalleryDB(path) as db:
        assert db.integrity_check() == "ok"
        assert db.count() == 2 and db.generation == 1 and [p.name for p in db.people()] == ["alice"]
        db.enrol("bob", _items(np.ones((1, 64, 16), np.float32)), SHA_A)  # and it still takes writes
        assert db.count() == 3


def test_open_set_curve_and_eer() -> None:
    best = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    correct = np.array([True, True, False, True, False, False])
    known = np.array([True, True, True, True, False, False])
    cal = open_set_curve(best, correct, known)
    # between 0.4 and 0.5: strangers (0.5, 0.6) rejected -> FAR 0; known accepted & correct: 3 of 4 -> FRR 0.25
    i = int(np.searchsorted(cal.thresholds, 0.45))
    assert cal.thresholds[i] == pytest.approx(0.45)
    assert cal.far[i] == 0.0 and cal.frr[i] == pytest.approx(0.25)
    assert cal.far[-1] == 1.0 and cal.frr[0] == 1.0
    assert 0.0 <= cal.eer <= 0.5 and cal.chosen == cal.eer_threshold
    strict = open_set_curve(best, correct, known, target_far=0.0)
    assert strict.chosen == pytest.approx(0.45)  # halfway between the last accepted and the first stranger
    assert decide([("a", 0.46)], strict.chosen) == UNKNOWN and decide([("a", 0.44)], strict.chosen) == "a"
    with pytest.raises(ValueError, match="strangers"):
        open_set_curve(best, correct, np.ones(6, bool))


def _clustered(n: int, per: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    sim = EmbeddingSimulator(seed=3)
    _, gallery = sim.gallery_chunk(0, n, per)
    probe = sim.sequences(np.random.default_rng(1).integers(0, n // per, queries), stream=10**6)
    return gallery, probe


def _chunks(vectors: np.ndarray, step: int = 2500):  # type: ignore[no-untyped-def]
    for s in range(0, len(vectors), step):
        yield np.arange(s, min(len(vectors), s + step)), vectors[s:s + step]


@pytest.mark.slow
def test_faiss_and_exact_search_agree_on_10000_embeddings(tmp_path: Path) -> None:
    gallery, probe = _clustered(10_000, 5, 60)
    exact_d, exact_i = ExactSearcher(gallery).search(probe, 5)
    # the default at this size: exact L2 candidates, exact re-ranking -> identical results
    build_faiss_index(_chunks(gallery), len(gallery), (256, 16), tmp_path / "flat", FaissParams.for_size(10_000))
    d, i = FaissSearcher(tmp_path / "flat").search(probe, 5)
    np.testing.assert_array_equal(i, exact_i)
    np.testing.assert_allclose(d, exact_d, rtol=1e-5)
    # the compressed index used for large galleries (PCA + IVF + SQ8), re-ranked exactly
    params = FaissParams(factory="IVF64,SQ8", pca_dim=128, nprobe=16, candidates=256, train_size=5000)
    build_faiss_index(_chunks(gallery), len(gallery), (256, 16), tmp_path / "ivf", params)
    d, i = FaissSearcher(tmp_path / "ivf").search(probe, 5)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(i, exact_i, strict=True)])
    assert recall >= 0.95
    same = (i == exact_i).all(1)
    assert same.mean() >= 0.9
    np.testing.assert_allclose(d[same], exact_d[same], rtol=1e-5)  # distances are exact, not approximate


def test_gallery_index_is_persisted_and_rebuilt_when_stale(tmp_path: Path) -> None:
    with _filled(tmp_path / "g.db", people=4, per=3) as db:
        exact = open_searcher(db, "exact")
        faiss_s = open_searcher(db, "faiss")
        folder = current_index(db)
        assert folder is not None and faiss_s.kind == "faiss" and exact.kind == "exact"
        probe = db.load_matrix().vectors[4] + 0.01
        got, want = faiss_s.top_people(probe, 3), exact.top_people(probe, 3)
        assert [n for n, _ in got] == [n for n, _ in want]
        assert [d for _, d in got] == pytest.approx([d for _, d in want], rel=1e-5)
        assert faiss_s.top_people(probe, 1)[0][0] == "person1"
        again = open_searcher(db, "faiss").searcher
        assert isinstance(again, FaissSearcher) and again.folder == folder  # fresh: reused, not rebuilt
        db.remove("person1")
        assert current_index(db) is None  # stale after a change
        rebuilt = open_searcher(db, "faiss")
        assert isinstance(rebuilt.searcher, FaissSearcher) and rebuilt.searcher.folder != folder
        assert not folder.exists()
        assert rebuilt.top_people(probe, 1)[0][0] != "person1" and len(rebuilt) == 9
