"""A self-contained HTML page (inline CSS, PNGs as base64 data URIs, no script, nothing fetched) built
from a few block types that the Markdown report shares: paragraphs, tables and PNG figures.

Text may hold `code` spans (backticks), shown as <code> in HTML and kept as they are in Markdown.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
       max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .8rem 0; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; }
th { background: #f2f2f4; }
td:first-child, th:first-child { text-align: left; }
tr.flag td { background: #fde8e8; font-weight: 600; }
code { background: #f2f2f4; padding: 0 .25rem; border-radius: 3px; font-size: .92em; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: .9rem; }
p.note { color: #555; font-size: .9rem; }
"""


@dataclass
class Table:
    """A table of text cells; rows whose index is in `flagged` are highlighted."""

    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    flagged: frozenset[int] = frozenset()


@dataclass
class Figure:
    """A PNG shown inline in HTML (data URI) and linked as `name` (a file beside report.md) in Markdown."""

    png: bytes
    name: str
    caption: str


@dataclass
class Section:
    """A heading and its blocks (a str is a paragraph)."""

    title: str
    blocks: list[str | Table | Figure] = field(default_factory=list)


def inline(text: str) -> str:
    """Escaped HTML of a text, with `code` spans as <code> elements."""
    parts = re.split(r"`([^`]*)`", text)
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _block_html(block: str | Table | Figure) -> str:
    if isinstance(block, Table):
        head = "".join(f"<th>{inline(h)}</th>" for h in block.header)
        rows = []
        for i, row in enumerate(block.rows):
            cls = ' class="flag"' if i in block.flagged else ""
            rows.append(f"<tr{cls}>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>")
        return (
            f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"
        )
    if isinstance(block, Figure):
        alt = html.escape(block.caption, quote=True)
        return (
            f'<figure><img src="{data_uri(block.png)}" alt="{alt}">'
            f"<figcaption>{inline(block.caption)}</figcaption></figure>"
        )
    return f"<p>{inline(block)}</p>"


def html_page(title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """The whole page as one string (UTF-8, no external resource, no script)."""
    body = [f"<h1>{inline(title)}</h1>"]
    if subtitle:
        body.append(f'<p class="note">{inline(subtitle)}</p>')
    for section in sections:
        body.append(f"<section>\n<h2>{inline(section.title)}</h2>")
        body += [_block_html(b) for b in section.blocks]
        body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _cell_md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_page(title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """The same page as Markdown; figures link to their `name` beside the file."""
    out = [f"# {title}", ""]
    if subtitle:
        out += [subtitle, ""]
    for section in sections:
        out += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                out.append("| " + " | ".join(_cell_md(h) for h in block.header) + " |")
                out.append("|" + "---|" * len(block.header))
                for i, row in enumerate(block.rows):
                    cells = [_cell_md(c) for c in row]
                    if i in block.flagged:
                        cells = [f"**{c}**" if c else c for c in cells]
                    out.append("| " + " | ".join(cells) + " |")
            elif isinstance(block, Figure):
                out.append(f"![{_cell_md(block.caption)}]({block.name})")
                out += ["", f"*{block.caption}*"]
            else:
                out.append(block)
            out.append("")
    return "\n".join(out)
