"""Replace one named section of a Markdown file (between HTML comment markers) with new text: how
`mendnet bench --doc` and the scripts in benchmarks/ keep docs/benchmarks.md current."""

from __future__ import annotations

import re
from pathlib import Path

HEADER = (
    "# mendnet benchmarks\n\n"
    "Each section is written by the script it names; rerun the script to refresh it.\n"
)


def write_section(name: str, body: str, doc: Path) -> None:
    """Put `body` between `<!-- begin NAME -->` and `<!-- end NAME -->`, appending the section if new
    (a new file starts with HEADER)."""
    text = doc.read_text() if doc.exists() else HEADER
    block = f"<!-- begin {name} -->\n{body.rstrip()}\n<!-- end {name} -->"
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->", re.S)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
