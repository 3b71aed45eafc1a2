"""A tiny document model rendered to both Markdown and standalone HTML (no template engine needed).

Reports are headings, paragraphs, bullet lists, tables and images; keeping them as data lets one
report be written twice without a Markdown-to-HTML dependency.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

HTML_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px}"
    "td.num{text-align:right}th{background:#f3f3f3}img{max-width:100%;margin:0.5em 0}"
    "code{background:#f3f3f3;padding:0 3px}"
)


@dataclass
class Document:
    """An ordered list of blocks: ("h", level, text), ("p", text), ("ul", items), ("table", header,
    rows), ("img", relative path, alt text)."""

    title: str
    blocks: list[tuple] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", level, text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: list[str]) -> None:
        self.blocks.append(("ul", list(items)))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", list(header), [list(map(str, row)) for row in rows]))

    def image(self, path: str, alt: str) -> None:
        self.blocks.append(("img", path, alt))

    def to_markdown(self) -> str:
        parts = [f"# {self.title}"]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                parts.append(f"{'#' * block[1]} {block[2]}")
            elif kind == "p":
                parts.append(block[1])
            elif kind == "ul":
                parts.append("\n".join(f"- {item}" for item in block[1]))
            elif kind == "table":
                header, rows = block[1], block[2]
                lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
                parts.append("\n".join(lines))
            elif kind == "img":
                parts.append(f"![{block[2]}]({block[1]})")
        return "\n\n".join(parts) + "\n"

    def to_html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                body.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
            elif kind == "p":
                body.append(f"<p>{_inline(block[1])}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block[1]) + "</ul>")
            elif kind == "table":
                head = "".join(f"<th>{html.escape(cell)}</th>" for cell in block[1])
                rows = "".join(
                    "<tr>" + "".join(f"<td{_cell_class(c)}>{html.escape(c)}</td>" for c in row) + "</tr>"
                    for row in block[2]
                )
                body.append(f"<table><tr>{head}</tr>{rows}</table>")
            elif kind == "img":
                body.append(f'<img src="{html.escape(block[1])}" alt="{html.escape(block[2])}">')
        return (
            f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
            f"<style>{HTML_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
        )


def _inline(text: str) -> str:
    """Escape text; Markdown `code` spans become <code> elements."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _cell_class(text: str) -> str:
    stripped = text.replace("±", "").replace(" ", "").replace(".", "").replace("-", "")
    return ' class="num"' if stripped.isdigit() else ""
