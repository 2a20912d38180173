"""Markdown tables of benchmark rows (list of dicts), shared by every bench script and run_all.py."""

from __future__ import annotations


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for row in rows for k in row))

    def fmt(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in cols) + " |" for row in rows]
    return "\n".join(lines)
