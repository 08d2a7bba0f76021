"""Gallery of known people: SQLite storage (:mod:`.db`), search (:mod:`.search`, :mod:`.index`) and the
enrol / identify / calibrate workflow (:mod:`.service`). Submodules import their heavy dependencies
(FAISS, torch, the extraction pipeline) only when used.
"""
