"""docs/benchmarks.md against issue 30's acceptance: every section was written by `mendnet bench` from the
recipe in recipes/ whose name is the section's (or is the summary of `mendnet bench --summary`, or one of
its parts), except the speed sections, each written by a script in benchmarks/; benchmarks/ holds only
those scripts and their section writer. Reads files only: nothing is run."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

from mendnet.bench.docs import is_summary

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = re.compile(r"<!-- begin (\S+) -->\n(.*?)<!-- end \1 -->", re.S)
SCRIPT = re.compile(r"benchmarks/(\w+)\.py")
SPEED_SCRIPTS = {"attack_speed", "autoattack_speed", "eval_batch", "train_throughput"}
"""The scripts that stay in benchmarks/: they measure seconds and images per second (issue 30)."""
WRITER = "docs_section"
"""The helper the speed scripts write their sections with (`mendnet.bench.docs.write_section`)."""


def sections() -> dict[str, str]:
    """Each section of docs/benchmarks.md: its name → its text between the begin and end markers."""
    return {m.group(1): m.group(2) for m in SECTION.finditer(DOC.read_text(encoding="utf-8"))}


def recipes() -> dict[str, Path]:
    """Each recipe in recipes/: its `name` → its path."""
    found = {}
    for path in sorted((ROOT / "recipes").glob("*.toml")):
        found[tomllib.loads(path.read_text(encoding="utf-8"))["name"]] = path
    return found


def speed_script(name: str, body: str) -> str | None:
    """The speed script a section names and whose stem begins the section's name, or None."""
    for stem in SCRIPT.findall(body):
        if stem in SPEED_SCRIPTS and name.startswith(stem):
            return stem
    return None


def test_the_doc_has_the_summary_and_the_robust_table() -> None:
    found = sections()
    assert "summary" in found and "robust_table_bench" in found, sorted(found)
    assert "mendnet bench --summary" in found["summary"]


def test_every_section_names_its_recipe_or_its_speed_script() -> None:
    by_name = recipes()
    unmade = []
    for name, body in sections().items():
        if is_summary(name):
            if "mendnet bench --summary" not in body:
                unmade.append(f"{name}: a summary section without its mendnet bench --summary line")
            continue
        recipe = by_name.get(name)
        if recipe is not None:
            named = f"recipes/{recipe.name}" in body and "mendnet bench" in body
            if not named:
                unmade.append(f"{name}: does not name {recipe.relative_to(ROOT)} and its mendnet bench line")
        elif speed_script(name, body) is None:
            unmade.append(f"{name}: no recipe has this name and it names no speed script in benchmarks/")
    assert not unmade, "\n".join(unmade)


def test_benchmarks_holds_only_the_speed_scripts_and_their_writer() -> None:
    held = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    assert held == SPEED_SCRIPTS | {WRITER}, sorted(held)
    named = {stem for name, body in sections().items() if (stem := speed_script(name, body))}
    assert named == SPEED_SCRIPTS, f"speed scripts without a section: {sorted(SPEED_SCRIPTS - named)}"


def test_the_check_catches_a_section_without_its_recipe() -> None:
    body = "Recipe `recipes/nowhere.toml`, command `mendnet bench recipes/nowhere.toml`.\n"
    assert speed_script("made_by_hand", body) is None
    assert speed_script("robust_table", "`benchmarks/robust_table.py --seeds 0`") is None
    assert speed_script("attack_speed_cpu", "`benchmarks/attack_speed.py --device cpu`") == "attack_speed"
    doc = "<!-- begin a -->\nx\n<!-- end a -->\n<!-- begin b -->\ny\n<!-- end b -->\n"
    assert {m.group(1): m.group(2) for m in SECTION.finditer(doc)} == {"a": "x\n", "b": "y\n"}
