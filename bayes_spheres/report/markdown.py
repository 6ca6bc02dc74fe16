"""A DataFrame as a markdown table (``DataFrame.to_markdown`` needs the ``tabulate`` package,
which the project does not depend on)."""

from __future__ import annotations

import pandas as pd


def markdown_table(table: pd.DataFrame) -> str:
    """Header, ``|---|`` separator and a line per row of ``table``, whose cells are already
    text; no trailing newline."""
    head = [str(column) for column in table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cells in table.itertuples(index=False, name=None):
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)
