"""Rows of a benchmark kept in a ``.jsonl`` file, so that a long run resumes where it stopped
(``bench/published.py --results``): one JSON object a line, appended as each row is
measured, with when and at which commit it was measured."""

from __future__ import annotations

import json
import os
import subprocess
import time

import numpy as np

KEY = ("target", "baseline", "budget", "seed")


def commit() -> str:
    """The checkout's commit (short), or ``unknown`` outside a git work tree."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, cwd=os.path.dirname(__file__))  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def stored_rows(path: str) -> dict[tuple, dict]:
    """The rows already in ``path`` (none where it is empty or missing), keyed by :data:`KEY`;
    a later line replaces an earlier one with the same key."""
    if not path or not os.path.exists(path):
        return {}
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {tuple(r[k] for k in KEY): r for r in rows}


def store_row(path: str, row: dict, **key) -> None:
    """Append ``row`` (arrays as lists) with its ``key`` fields, the time and the commit."""
    record = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in row.items()}
    record |= key | {"measured": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": commit()}
    with open(path, "a") as f:
        f.write(json.dumps(record, default=float) + "\n")
