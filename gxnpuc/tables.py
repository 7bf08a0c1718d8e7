"""The one text-table renderer: aligned plain-text columns (summary, `-v`, `-m`, `-L`, the
--eval and --tune reports, the benchmark table) and markdown tables (docs/ops.md)."""
from __future__ import annotations


def table_lines(headers: list, rows: list[list], right=frozenset()) -> list[str]:
    """Header, a rule of dashes, then one line per row; columns whose index is in `right` are
    right-aligned (numbers), the others left-aligned; no trailing spaces."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return [line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]]


def text_table(headers: list, rows: list[list], right=frozenset()) -> str:
    return "\n".join(table_lines(headers, rows, right))


def numbers_table(headers: list, rows: list[list]) -> str:
    """A name column left-aligned, every other column right-aligned (the report tables)."""
    return text_table(headers, rows, right=frozenset(range(1, len(headers))))


def markdown_table(headers: list, rows: list[list]) -> str:
    def esc(c):
        return str(c).replace("|", "\\|").replace("\n", " ") or " "
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(out + ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows])
