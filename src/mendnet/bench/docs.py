"""Named sections of a Markdown file (between `<!-- begin NAME -->` and `<!-- end NAME -->`): how
`mendnet bench --doc` and the scripts in benchmarks/ keep docs/benchmarks.md current, the SUMMARY section
(`mendnet bench --summary`) before all the others, the link target of a section's heading; and the
provenance line of a section written by `mendnet bench` (recipe file, command, commit, date)."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mendnet.bench.code import SHORT

HEADER = (
    "# mendnet benchmarks\n\n"
    "Each section is written by the script it names; rerun the script to refresh it.\n"
)


SUMMARY = "summary"
"""The section of `mendnet bench --summary`, and the prefix of its parts ("summary_robust": a summary of
other folders, written by `--summary ... --section`): a new one goes before the first section that is not
one of them, after the opening paragraphs."""
BEGIN = re.compile(rf"^<!-- begin (?!{SUMMARY}[ _])", re.M)
"""The start of a section that is not the summary or one of its parts."""


def is_summary(name: str) -> bool:
    """Whether `name` is the summary's section or one of its parts (SUMMARY, or SUMMARY_ and a name)."""
    return re.fullmatch(rf"{SUMMARY}(_[\w.-]+)?", name) is not None


def _add_section(text: str, name: str, block: str) -> str:
    """`text` with the new section `block`: the summary and its parts before the first other section
    (appended when there is none), any other section appended."""
    first = BEGIN.search(text)
    if is_summary(name) and first is not None:
        return text[: first.start()] + block + "\n\n" + text[first.start() :]
    return text.rstrip() + "\n\n" + block + "\n"


def write_section(name: str, body: str, doc: Path) -> None:
    """Put `body` between `<!-- begin NAME -->` and `<!-- end NAME -->` where the section is, or add it
    (`_add_section`; a new file starts with HEADER)."""
    text = doc.read_text() if doc.exists() else HEADER
    block = f"<!-- begin {name} -->\n{body.rstrip()}\n<!-- end {name} -->"
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else _add_section(text, name, block)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def anchor(heading: str) -> str:
    """The link target GitHub gives a Markdown heading's text: lower case, every character but letters,
    digits, `_`, `-` and spaces dropped, each space a hyphen (a repeated heading's "-1" is not added)."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


@dataclass(frozen=True)
class Provenance:
    """Where a section's numbers come from: the recipe file, the command that wrote the section, the
    commit (as `commit_text` words it) and the date."""

    recipe_file: str
    command: str
    commit: str
    date: str

    def line(self) -> str:
        """The provenance as the opening words of a section's settings line."""
        return f"Recipe `{self.recipe_file}`, command `{self.command}`, {self.commit}, {self.date}"


def git_state(paths: Sequence[Path]) -> tuple[str, bool] | None:
    """(short HEAD commit, whether any of `paths` differs from it, untracked files included) of the git
    checkout that holds `paths[0]`; paths outside that checkout are not looked at. None outside a
    checkout or without git."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(paths[0]), *args], capture_output=True, text=True, check=True, timeout=60
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    top, head = git("rev-parse", "--show-toplevel"), git("rev-parse", "--short", "HEAD")
    if not top or not head:
        return None
    inside = [str(p.resolve()) for p in paths if p.resolve().is_relative_to(Path(top).resolve())]
    status = git("status", "--porcelain", "--", *inside)
    return head, status != ""


def commit_text(state: tuple[str, bool] | None, code: dict[str, str]) -> str:
    """The commit as a section names it: "commit `abc1234`"; with changes not committed, "uncommitted
    changes on commit `abc1234`, code HASH" (HASH: the source hash of `code`); outside a git checkout,
    "no git commit, code HASH"."""
    source = f"code `{code['source'][:SHORT]}`"
    if state is None:
        return f"no git commit, {source}"
    head, dirty = state
    return f"uncommitted changes on commit `{head}`, {source}" if dirty else f"commit `{head}`"


def provenance(recipe_file: Path, command: str, package: Path, code: dict[str, str]) -> Provenance:
    """The Provenance of a section written now by `command` from `recipe_file`, with the commit of the
    checkout holding `package` (dirty when the package's source or the recipe file differ from it)."""
    state = git_state([package, recipe_file])
    return Provenance(str(recipe_file), command, commit_text(state, code), time.strftime("%Y-%m-%d"))
