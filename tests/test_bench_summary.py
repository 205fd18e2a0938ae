"""The one-screen summary of results folders (`mendnet bench --summary`, mendnet.bench.summary) on
hand-written records: no model is trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mendnet.bench import parse_recipe
from mendnet.bench.docs import SUMMARY, anchor, write_section
from mendnet.bench.markdown import STALE
from mendnet.bench.recipe import tomllib
from mendnet.bench.run import write_results
from mendnet.bench.summary import (
    RULE,
    Figures,
    Folder,
    pick_repair,
    read_results,
    repair_table,
    robust_table,
    summary_text,
)
from mendnet.cli import main
from mendnet.errors import MendnetError

SEEDS = (0, 1)
TITLE = "Backdoor repairs on Fashion-MNIST (mendnet bench)"


def record(attack: str, method: str, seed: int, kind: str = "repair", **metrics: float) -> dict:
    """A finished cell's record on fashion-mnist / small-cnn (metrics as fractions)."""
    return {
        "id": f"{attack}--{method}--s{seed}",
        "kind": kind,
        "data": "fashion-mnist",
        "model": "small-cnn",
        "attack": attack,
        "method": method,
        "seed": seed,
        "metrics": metrics,
        "info": {},
    }


def column(method: str, per_seed: list[tuple[float, float]], attack: str = "badnets") -> list[dict]:
    """A column's records, one per (ACC, ASR) pair, seeds 0, 1, ..."""
    kind = "base" if method == "none" else "mend" if method == "mend" else "repair"
    return [record(attack, method, s, kind, acc=a, asr=r) for s, (a, r) in enumerate(per_seed)]


def folder(records: list[dict], stale: frozenset[str] = frozenset()) -> Folder:
    return Folder(
        path=Path("runs/bench-defense"),
        recipe="defense_table_bench",
        title=TITLE,
        seeds=SEEDS,
        cells=len(records),
        finished=len(records),
        code={"version": "0.1.0", "source": "ab" * 32},
        stale=stale,
        records=tuple(records),
    )


def figures(method: str, per_seed: list[tuple[float, float]]) -> Figures:
    return Figures(method, tuple(column(method, per_seed)))


NONE = figures("none", [(0.90, 1.00), (0.92, 0.98)])  # mean ACC 0.91


def test_the_lowest_asr_within_one_point_of_acc_is_chosen():
    columns = [
        figures("fst", [(0.90, 0.02), (0.91, 0.04)]),  # drop 0.5 points, ASR 3%
        figures("anp", [(0.80, 0.00), (0.80, 0.00)]),  # ASR 0%, but a drop of 11 points
        figures("nad", [(0.895, 0.05), (0.905, 0.05)]),  # drop 1.0 point exactly: qualifies, ASR 5%
    ]
    pick = pick_repair(NONE, columns, SEEDS)
    assert pick.chosen is not None and pick.chosen.column == "fst"
    assert pick.within and pick.drop == pytest.approx(0.5)
    assert pick_repair(NONE, columns[1:], SEEDS).chosen.column == "nad"  # the 1-point bound is inclusive


def test_when_none_qualifies_the_lowest_asr_column_is_named_with_its_drop():
    columns = [figures("anp", [(0.80, 0.00), (0.80, 0.02)]), figures("ft", [(0.85, 0.10), (0.85, 0.10)])]
    pick = pick_repair(NONE, columns, SEEDS)
    assert pick.chosen.column == "anp" and not pick.within and pick.drop == pytest.approx(11.0)
    table = repair_table([folder([*NONE.records, *(r for c in columns for r in c.records)])])
    assert "| no column within 1 point; lowest ASR: anp | 80.00 ± 0.00 | 1.00 ± 1.41 | 11.00 |" in table


def test_columns_without_every_seed_finished_are_left_out():
    unfinished = figures("nad", [(0.91, 0.00)])  # seed 1 missing
    refused = Figures("lancet-flip", ())  # refused at every seed: no figures
    pick = pick_repair(NONE, [unfinished, refused, figures("fst", [(0.90, 0.02), (0.91, 0.04)])], SEEDS)
    assert pick.chosen.column == "fst" and pick.left_out == ("nad", "lancet-flip")
    nothing = pick_repair(NONE, [unfinished], SEEDS)
    assert nothing.chosen is None and nothing.none_finished
    assert not pick_repair(Figures("none", NONE.records[:1]), [unfinished], SEEDS).none_finished


def test_a_row_whose_unrepaired_model_lacks_a_seed_is_judged_on_the_others():
    """A backdoor that could not be planted on seed 1 (no unrepaired model there): the row is judged on
    seed 0 alone, and its figures say they cover 1 of the grid's 2 seeds."""
    records = [
        *column("none", [(0.90, 1.00)], attack="trojan"),
        *column("fst", [(0.895, 0.02)], attack="trojan"),
        *column("nad", [(0.80, 0.00)], attack="trojan"),
        *column("none", [], attack="blend"),
        *column("fst", [(0.88, 0.50)], attack="blend"),
    ]
    lines = repair_table([folder(records)]).splitlines()
    assert lines[4].startswith(
        "| fashion-mnist, small-cnn | trojan | – | fst | 89.50 (1 of 2 seeds) | 2.00 (1 of 2 seeds) | 0.50 | "
        "100.00 (1 of 2 seeds) |"
    )
    assert "| blend | – | no choice: the unrepaired model has no finished seed (left out" in lines[5]


def test_the_repair_table_reads_rows_and_columns_from_the_records():
    records = [
        *column("none", [(0.90, 1.00), (0.92, 0.98)]),
        record("badnets", "detect", 0, "detect", flagged=1.0),
        *column("fst", [(0.90, 0.02), (0.91, 0.04)]),
        *column("mend", [(0.91, 0.01), (0.91, 0.01)]),
        record("badnets", "fst", 0, "retune", retune_acc=0.9, retune_asr=0.9),  # a retune cell: no column
        *column("none", [(0.80, 0.0), (0.80, 0.0)], attack="none"),  # the clean row: no line
        *column("fst", [(0.80, 0.0), (0.80, 0.0)], attack="none"),
        *column("none", [(0.88, 0.96), (0.88, 0.94)], attack="blend"),
        *column("fst", [(0.88, 0.50)], attack="blend"),
    ]
    stale = frozenset({"badnets--mend--s1"})
    lines = repair_table([folder(records, stale)]).splitlines()
    link = f"[defense_table_bench](#{anchor(TITLE)})"
    assert link == "[defense_table_bench](#backdoor-repairs-on-fashion-mnist-mendnet-bench)"
    assert lines[4] == (
        f"| fashion-mnist, small-cnn | badnets | – | mend | 91.00 ± 0.00 {STALE} | 1.00 ± 0.00 {STALE} | "
        f"0.00 {STALE} | 99.00 ± 1.41 | {link} |"
    )
    blend = lines[5]
    assert "| blend | – | no choice: no repair column has every seed finished (left out" in blend
    assert "seed without figures: fst) | – | – | – | 95.00 ± 1.41 |" in blend
    assert len(lines) == 6


def test_the_poisoning_rate_comes_from_the_unrepaired_models_specs():
    """Two folders of the same attack at 10% and 1%: each row names its rate (the specs' fraction, in
    percent; the records of the other tests name no spec and show –)."""

    def at_rate(rate: float) -> list[dict]:
        none = column("none", [(0.90, 1.00), (0.92, 0.98)])
        for r in none:
            r["spec"] = {"poison": {"target": 0, "rate": rate, "mode": "all-to-one"}}
        return [*none, *column("fst", [(0.90, 0.02), (0.91, 0.04)])]

    lines = repair_table([folder(at_rate(0.1)), folder(at_rate(0.01))]).splitlines()
    assert lines[2].startswith("| data, model | attack | poisoned % | best repair |")
    assert "| badnets | 10 | fst |" in lines[4] and "| badnets | 1 | fst |" in lines[5]


def test_robust_lines_show_autoattack_pgd_and_clean_acc_or_not_measured():
    nat = [record("natural", "natural", s, "base", acc=0.9, **{"pgd-linf-20": 0.0}) for s in SEEDS]
    at = [
        record("natural", "pgd-at", s, "robustify", acc=0.8, autoattack=a, **{"pgd-linf-20": p})
        for s, (a, p) in enumerate([(0.60, 0.65), (0.62, 0.67)])
    ]
    lines = robust_table([folder([*nat, *at])]).splitlines()
    assert "| natural | not measured | 0.00 ± 0.00 | 90.00 ± 0.00 |" in lines[4]
    assert "| pgd-at | 61.00 ± 1.41 | 66.00 ± 1.41 | 80.00 ± 0.00 |" in lines[5]
    assert repair_table([folder([*nat, *at])]) is None
    text = summary_text([folder([*nat, *at])], "Folders ...", "Summary: robust")
    assert text.startswith("## Summary: robust\n\nFolders ...\n\nEvery figure is in percent")
    assert "Best repair" not in text  # the rule belongs to a repair table, absent here


def test_the_summary_names_the_rule_and_the_stale_mark():
    records = [*column("none", [(0.90, 1.00), (0.92, 0.98)]), *column("fst", [(0.90, 0.02), (0.91, 0.04)])]
    text = summary_text([folder(records, frozenset({"badnets--fst--s0"}))], "Folders ...")
    assert text.startswith("## Summary\n\nFolders ...\n\n")
    assert f"Best repair: {RULE}." in text and "comes from the section named beside it" in text
    assert text.rstrip().endswith(
        f"{STALE}: the figure includes cells computed by other code than the one its "
        "folder's results.json names (kept by `--keep-stale`)."
    )
    assert STALE not in summary_text([folder(records)], "")


def test_the_summary_section_goes_before_the_first_section_and_stays_there(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# doc\n\nIntro.\n\n<!-- begin a -->\nA\n<!-- end a -->\n")
    write_section(SUMMARY, "S1", doc)
    write_section("b", "B", doc)
    write_section(SUMMARY, "S2", doc)
    assert doc.read_text() == (
        "# doc\n\nIntro.\n\n<!-- begin summary -->\nS2\n<!-- end summary -->\n\n"
        "<!-- begin a -->\nA\n<!-- end a -->\n\n<!-- begin b -->\nB\n<!-- end b -->\n"
    )


def results_folder(tmp_path: Path, **changes) -> Path:
    """A results folder whose results.json holds a badnets row of none and fst (seeds 0, 1); `changes`
    replace its keys (None: leaves the key out)."""
    records = [*column("none", [(0.90, 1.00), (0.92, 0.98)]), *column("fst", [(0.90, 0.02), (0.91, 0.04)])]
    data = {
        "recipe": "defense_table_bench",
        "title": TITLE,
        "smoke": False,
        "seeds": [0, 1],
        "cells": 4,
        "finished": 4,
        "code": {"version": "0.1.0", "source": "cd" * 32},
        "stale": [],
        "records": records,
        **changes,
    }
    out = tmp_path / "results"
    out.mkdir(parents=True)
    (out / "results.json").write_text(json.dumps({k: v for k, v in data.items() if v is not None}))
    return out


def test_read_results_and_its_errors(tmp_path):
    assert read_results(results_folder(tmp_path)).seeds == (0, 1)
    with pytest.raises(MendnetError, match="does not exist"):
        read_results(tmp_path / "missing")
    with pytest.raises(MendnetError, match=r"holds no readable results\.json"):
        read_results(tmp_path)
    (tmp_path / "results.json").write_text('{"written by": "a script"}')
    with pytest.raises(MendnetError, match=r"holds no readable results\.json"):
        read_results(tmp_path)
    old = results_folder(tmp_path / "old", seeds=None)
    assert read_results(old).seeds == (0, 1)  # written before results.json named them: the records'
    with pytest.raises(MendnetError, match="--smoke run"):
        read_results(results_folder(tmp_path / "smoke", smoke=True))
    selection = results_folder(tmp_path / "select")
    data = json.loads((selection / "results.json").read_text())
    data["records"][0]["spec"] = {"evaluate_on": {"split": "validation"}}
    (selection / "results.json").write_text(json.dumps(data))
    with pytest.raises(MendnetError, match="validation split"):
        read_results(selection)


def test_results_json_names_the_grids_seeds_for_the_summary(tmp_path):
    recipe = parse_recipe(
        tomllib.loads(
            'name = "tiny"\n[grid]\ndata = ["fashion-mnist"]\nmodels = ["small-cnn"]\n'
            'attacks = ["badnets"]\nrepairs = ["finetune"]\nseeds = [3, 5]\n'
        )
    )
    records = column("none", [(0.9, 1.0)])  # seed 0 only: the seeds come from the grid
    write_results(recipe, tmp_path, records, 4, {"version": "0.1.0", "source": "ef" * 32}, [])
    assert read_results(tmp_path).seeds == (3, 5)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_or_writes_the_summary(tmp_path, capsys):
    results = results_folder(tmp_path)
    code, out, _ = run_cli(capsys, "bench", "--summary", results)
    assert code == 0 and out.startswith("## Summary\n\nFolders `")
    assert f"command `mendnet bench --summary {results}`" in out and "| badnets | – | fst |" in out
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# doc\n\nIntro.\n\n<!-- begin a -->\nA\n<!-- end a -->\n")
    code, out, _ = run_cli(capsys, "bench", "--summary", results, "--doc", doc)
    assert code == 0 and "section summary" in out
    text = doc.read_text()
    assert text.index("<!-- begin summary -->") < text.index("<!-- begin a -->")
    assert f"--doc {doc}`" in text


def test_a_part_of_the_summary_goes_after_it_with_its_own_heading_and_command(tmp_path, capsys):
    results = results_folder(tmp_path)
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        "# doc\n\n<!-- begin summary -->\nS\n<!-- end summary -->\n\n<!-- begin a -->\nA\n<!-- end a -->\n"
    )
    code, out, _ = run_cli(capsys, "bench", "--summary", results, "--doc", doc, "--section", "summary_robust")
    assert code == 0 and "section summary_robust" in out
    text = doc.read_text()
    assert text.index("<!-- end summary -->") < text.index("<!-- begin summary_robust -->")
    assert text.index("<!-- end summary_robust -->") < text.index("<!-- begin a -->")
    assert "<!-- begin summary -->\nS\n<!-- end summary -->" in text  # the summary itself is kept
    assert "## Summary: robust\n" in text and f"--doc {doc} --section summary_robust`" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--summary", "MISSING"], "does not exist"),
        (["--summary", "TMP"], "holds no readable results.json"),
        (["--summary", "RESULTS", "--out", "x", "--max-cells", "0"], "--summary takes no --out, --max-cells"),
        (["r.toml", "--summary", "RESULTS", "--smoke"], "--summary takes no RECIPE, --smoke"),
        (["--summary", "RESULTS", "--section", "s", "--quiet"], "--summary takes no --quiet"),
        (
            ["--summary", "RESULTS", "--section", "robust"],
            "--summary writes section 'summary' or summary_NAME",
        ),
        (["--out", "x"], "give a recipe file"),
        (["r.toml", "--section", "summary"], "section 'summary' is a summary's"),
        (["r.toml", "--section", "summary_robust"], "section 'summary_robust' is a summary's"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    results = results_folder(tmp_path)
    named = {"MISSING": tmp_path / "missing", "TMP": tmp_path, "RESULTS": results}
    code, _, err = run_cli(capsys, "bench", *(named.get(a, a) for a in argv))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
