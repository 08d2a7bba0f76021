"""Official subject splits (OpenGait partition JSONs), shipped in ``gaitheat/partitions``.

CASIA-B: 74 train / 50 test subjects (ids 001-074 / 075-124); CCPG: 100 / 100; SUSTech1K: 250 / 800.
"""

from __future__ import annotations

import json
from pathlib import Path

PARTITION_DIR = Path(__file__).resolve().parent.parent / "partitions"
SHIPPED = {"casia-b": "CASIA-B.json", "ccpg": "CCPG.json", "sustech1k": "SUSTech1K.json"}


def load_partition(name_or_path: str) -> tuple[list[str], list[str]]:
    """(train subject ids, test subject ids) from a shipped dataset name or a partition JSON path.

    Raises:
        ValueError: unknown name, unreadable file, or a file without ``TRAIN_SET``/``TEST_SET`` lists.
    """
    key = name_or_path.lower()
    path = PARTITION_DIR / SHIPPED[key] if key in SHIPPED else Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"partition '{name_or_path}' is neither a shipped name {sorted(SHIPPED)} nor a file")
    try:
        data = json.loads(path.read_text())
        train, test = data["TRAIN_SET"], data["TEST_SET"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a partition file with TRAIN_SET and TEST_SET ({exc})") from exc
    if not all(isinstance(s, str) for s in [*train, *test]):
        raise ValueError(f"{path}: subject ids must be strings")
    overlap = set(train) & set(test)
    if overlap:
        raise ValueError(f"{path}: {len(overlap)} subjects are in both sets, e.g. {sorted(overlap)[:3]}")
    return list(train), list(test)
