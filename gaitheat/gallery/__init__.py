"""Gallery of known people: enrol walking videos, identify the people in a new video (open set).

* :mod:`.db`: ``GalleryDB`` (SQLite, WAL, one transaction per enrolment, model checksum pinned).
* :mod:`.search`: exact search and FAISS candidates re-ranked by the true distance, the one the
  gallery's model is evaluated with (strip-mean Euclidean, or strip-mean cosine for GaitGraph2);
  :mod:`.index`: ``open_searcher(db)``, with the FAISS index persisted next
  to the database and rebuilt when the database's generation moves on.
* :mod:`.service`: ``load_embedder``, ``extract_tracks``, ``enrol_tracks``, ``identify_tracks``,
  ``calibrate`` / ``open_set_curve``; :mod:`.show`: boxes and names drawn on the video.
* :mod:`.simulate`: realistic random embeddings for tests and ``benchmarks/gallery.py``.

Submodules import their heavy dependencies (FAISS, torch, the extraction pipeline) only when used.
"""
