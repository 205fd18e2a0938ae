"""Every citation of the methods reference and of the deviations table points into the project's own docs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITING = [*ROOT.glob("src/mendnet/**/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("docs/*.md")]


def cited(pattern: str) -> set[tuple[str, str]]:
    return {(m, p.name) for p in CITING for m in re.findall(pattern, p.read_text())}


def test_every_methods_citation_names_a_section_of_docs_methods():
    sections = set(re.findall(r"^## (\d+)\.", (ROOT / "docs/methods.md").read_text(), re.M))
    refs = cited(r"docs/methods\.md §(\d+)")
    assert len(refs) > 50
    assert {(n, f) for n, f in refs if n not in sections} == set()
    bare = cited(r"(?<![/\w])methods\.md")
    assert bare == set(), "cite the project's file as docs/methods.md"


def test_every_deviations_link_names_an_anchor_and_each_method_module_links_one():
    anchors = set(re.findall(r'<a id="([^"]+)"', (ROOT / "docs/deviations.md").read_text()))
    links = cited(r"docs/deviations\.md#([\w-]+)")
    assert {(a, f) for a, f in links if a not in anchors} == set()
    methods = [*ROOT.glob("src/mendnet/repair/**/*.py"), *ROOT.glob("src/mendnet/robust/*.py")]
    unlinked = [
        p.name for p in methods if p.name != "__init__.py" and "docs/deviations.md#" not in p.read_text()
    ]
    assert unlinked == [] or set(unlinked) <= {"job.py", "distill.py"}
