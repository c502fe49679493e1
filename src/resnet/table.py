"""Plain-text tables in Markdown pipe syntax: readable in a terminal and pasteable into Markdown docs."""

from __future__ import annotations

from typing import Any, Sequence


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """Render ``rows`` under ``headers``; ``align`` is one letter per column, ``l`` or ``r`` (default: numbers right)."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    if align is None:
        align = "".join("r" if rows and all(isinstance(r[i], (int, float)) or r[i] is None for r in rows) else "l"
                        for i in range(len(headers)))
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        parts = [c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(row, widths, align)]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23 M'; for parameter and MAC counts."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.3f} {suffix}{unit}"
    return f"{n:g} {unit}".rstrip()
