"""The registry declares what each method can use, and the CLI's flags follow the declaration."""

from __future__ import annotations

import pytest

from mendnet.cli import main
from mendnet.registry import REPAIRS, ROBUSTIFIERS


def test_declared_capabilities():
    assert {n for n, m in REPAIRS.items() if m.teacher} == {"nad", "mcr"}
    assert {n for n, m in REPAIRS.items() if m.uses_trigger} == {
        "neural-cleanse",
        "lancet-flip",
        "lancet-finetune",
    }
    assert {n for n, m in REPAIRS.items() if m.oracle} == {"lancet-flip", "lancet-finetune"}
    assert {n: m.teacher for n, m in ROBUSTIFIERS.items() if m.teacher} == {
        "shafahi": "robust",
        "robust-kd": "robust",
        "agkd-bml": "natural",
    }


def help_of(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("name", list(REPAIRS))
def test_repair_flags_follow_the_registry(name, capsys):
    text = help_of(["repair", name], capsys)
    assert ("--teacher" in text) == bool(REPAIRS[name].teacher)
    assert ("--oracle-trigger" in text) == REPAIRS[name].oracle


@pytest.mark.parametrize("name", list(ROBUSTIFIERS))
def test_robustify_flags_follow_the_registry(name, capsys):
    text = help_of(["robustify", name], capsys)
    assert ("--teacher" in text) == bool(ROBUSTIFIERS[name].teacher)
    assert ("--arch" in text) != bool(ROBUSTIFIERS[name].teacher)
