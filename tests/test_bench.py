"""`mendnet bench`: recipe parsing, the grid from the registries, resuming, results, and Ray = local."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mendnet.bench import code, load_recipe, parse_recipe, run_bench
from mendnet.bench.cells import enumerate_cells
from mendnet.bench.docs import commit_text, git_state
from mendnet.bench.recipe import tomllib
from mendnet.bench.store import BenchStore
from mendnet.cli import main
from mendnet.device import device_label
from mendnet.errors import MendnetError
from mendnet.registry import ROBUSTIFIERS

# The acceptance grid: two attacks × two repairs × two seeds (plus each backdoored model's own "none" cell)
# with small budgets: small CNN, 600 training images, 1 epoch, 0.5% defender data, 200 test images. NAD's
# teacher is the FT cell's model (so both engines pass one cell's model to another).
RECIPE = """
name = "tiny"
title = "Tiny grid"
[grid]
data = ["fashion-mnist"]
models = ["small-cnn"]
attacks = ["badnets", "blend"]
repairs = ["finetune", "nad"]
seeds = [0, 1]
[run]
train_subset = 600
test_images = 200
clean_fraction = 0.005
[train]
epochs = 1
batch_size = 64
lr = 0.05
[poison]
rate = 0.2
[attack.blend]
alpha = 0.3
[repair.finetune]
epochs = 1
[repair.nad]
epochs = 1
teacher_epochs = 1
betas = [500, 1000]
teacher = "finetune"
"""
CELLS = 12  # 2 attacks × 2 seeds × (none + 2 repairs)
FIRST = 5


def recipe_from(text: str):
    return parse_recipe(tomllib.loads(text))


def without_seconds(record: dict) -> dict:
    return {k: v for k, v in record["metrics"].items() if "seconds" not in k}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("[repair.nad]\nepochs = 1\n", "[repair.nad]\nepochs = 1\nlrr = 0.1\n"), "nad: unknown setting lrr"),
        (("[repair.finetune]\nepochs = 1", '[repair.finetune]\nepochs = "one"'), "finetune.epochs must be"),
        (('repairs = ["finetune", "nad"]', 'repairs = ["finetune", "nope"]'), "unknown 'nope'; known:"),
        (('attacks = ["badnets", "blend"]', 'attacks = ["badnets"]'), "'blend' is not in grid.attacks"),
        (("seeds = [0, 1]", "seeds = []"), "grid.seeds must be a non-empty list"),
        (("epochs = 1\nbatch_size = 64", "epochs = 0\nbatch_size = 64"), "epochs must be ≥ 1"),
        (("[run]", "[run]\nthreds = 2"), "run: unknown setting threds; valid: train_subset"),
        (('name = "tiny"', 'name = "tiny"\ncolour = 1'), "unknown recipe key colour"),
    ],
)
def test_recipe_mistakes_are_one_line_errors(change, message):
    old, new = change
    assert old in RECIPE
    with pytest.raises(MendnetError, match=message) as info:
        recipe_from(RECIPE.replace(old, new))
    assert "\n" not in str(info.value)


def test_unknown_key_error_lists_the_valid_ones():
    with pytest.raises(MendnetError) as info:
        recipe_from(RECIPE.replace("teacher_epochs = 1", "teacher_epoch = 1"))
    assert "valid: epochs, batch_size, lr" in str(info.value) and "teacher_epochs" in str(info.value)


def test_settings_become_the_methods_configs():
    recipe = recipe_from(RECIPE)
    assert recipe.columns["nad"].config.betas == (500.0, 1000.0)  # list of ints → tuple of floats
    assert recipe.columns["nad"].config.lr == 0.1  # unset fields keep the paper's default
    assert recipe.columns["finetune"].config.epochs == 1
    assert recipe.columns["nad"].method == "nad" and recipe.columns["nad"].teacher == "finetune"
    assert recipe.attack_params == {"blend": (("alpha", 0.3),)}
    assert recipe.run.threads == 1 and recipe.train.batch_size == 64


def test_grid_is_generated_from_the_registry(monkeypatch):
    from mendnet import registry

    recipe = recipe_from(RECIPE.replace('repairs = ["finetune", "nad"]', 'repairs = "all"'))
    assert recipe.grid.repairs == tuple(registry.REPAIRS)
    extra = registry.Method("extra", "a new method", registry.REPAIRS["finetune"].config, lambda *a: None)
    monkeypatch.setitem(registry.REPAIRS, "extra", extra)
    recipe = recipe_from(RECIPE.replace('repairs = ["finetune", "nad"]', 'repairs = "all"'))
    methods = {c.method for c in enumerate_cells(recipe)}
    assert methods == {"none", *registry.REPAIRS} and "extra" in methods
    assert len(enumerate_cells(recipe)) == 2 * 2 * (1 + len(registry.REPAIRS))


def test_missing_or_broken_recipe_file(tmp_path):
    with pytest.raises(MendnetError, match="does not exist"):
        load_recipe(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[grid\n")
    with pytest.raises(MendnetError, match="not valid TOML"):
        load_recipe(tmp_path / "bad.toml")


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory):
    """The grid run locally in two goes: stopped after FIRST cells (as a killed run), then resumed."""
    recipe = recipe_from(RECIPE)
    out = tmp_path_factory.mktemp("bench") / "local"
    first = run_bench(recipe, out, max_cells=FIRST, progress=False)
    files_after_first = sorted(p.name for p in (out / "cells").iterdir())
    second = run_bench(recipe, out, progress=False)
    return recipe, out, first, files_after_first, second


def test_a_stopped_run_resumes_with_only_the_missing_cells(local_runs):
    recipe, out, first, files_after_first, second = local_runs
    ids = [c.id for c in enumerate_cells(recipe)]
    assert first.computed == ids[:FIRST] and first.missing == ids[FIRST:] and not first.skipped
    assert files_after_first == sorted(f"{i}.json" for i in ids[:FIRST])
    assert second.computed == ids[FIRST:] and second.skipped == ids[:FIRST] and not second.missing
    assert len(second.records) == CELLS
    # the models cached by the first run were reused, not trained again
    assert sorted(p.name for p in (out / "models").iterdir()) == sorted(
        {c.base.id for c in enumerate_cells(recipe)}
    )
    third = run_bench(recipe, out, progress=False)
    assert third.computed == [] and len(third.skipped) == CELLS


def test_another_recipe_with_other_settings_does_not_overwrite_a_folder(local_runs, tmp_path):
    """Cells and base models are named without their settings, so a second recipe whose cells share
    their names (a NAD column with another teacher lr) is refused in that folder before any work; the
    same settings under another name reuse every cell."""
    _, out, *_ = local_runs
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    other = recipe_from(
        RECIPE.replace('name = "tiny"', 'name = "other"').replace("teacher_epochs = 1", "teacher_epochs = 2")
    )
    with pytest.raises(
        MendnetError, match=r"holds the cell .*--nad of recipe tiny with other settings; .*another --out"
    ):
        run_bench(other, copy, progress=False)
    trained = recipe_from(RECIPE.replace('name = "tiny"', 'name = "other"').replace("lr = 0.05", "lr = 0.04"))
    with pytest.raises(MendnetError, match="of recipe tiny with other settings"):
        run_bench(trained, copy, progress=False)
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
    same = run_bench(recipe_from(RECIPE.replace('name = "tiny"', 'name = "same"')), copy, progress=False)
    assert same.computed == [] and len(same.skipped) == CELLS


def test_the_grid_has_real_results(local_runs):
    _, _, _, _, second = local_runs
    by_method = {}
    for r in second.records:
        by_method.setdefault((r["attack"], r["method"]), []).append(r["metrics"])
    for attack in ("badnets", "blend"):
        none = by_method[(attack, "none")]
        assert len(none) == 2 and all(m["asr"] > 0.5 for m in none), none  # the backdoors were planted
        for method in ("finetune", "nad"):
            assert all({"acc", "asr", "ra", "der", "seconds"} <= set(m) for m in by_method[(attack, method)])


def test_results_files_are_tidy_and_tables_show_mean_and_std(local_runs):
    _, out, _, _, second = local_runs
    lines = (out / "results.csv").read_text().splitlines()
    assert lines[0] == "data,model,attack,method,seed,metric,value"
    assert len(lines) - 1 == sum(len(r["metrics"]) for r in second.records)
    data = json.loads((out / "results.json").read_text())
    assert data["cells"] == data["finished"] == CELLS
    tables = (out / "tables.md").read_text()
    asr_table = tables.split("**ASR %**")[1].split("**")[0]
    for attack in ("badnets", "blend"):
        row = next(line for line in asr_table.splitlines() if line.startswith(f"| {attack} |"))
        cells = [c.strip() for c in row.strip("| ").split("|")]
        for column, method in ((1, "none"), (2, "finetune"), (3, "nad")):  # column 0: the attack
            asr = [
                100 * r["metrics"]["asr"]
                for r in second.records
                if (r["attack"], r["method"]) == (attack, method)
            ]
            assert cells[column] == f"{statistics.mean(asr):.2f} ± {statistics.stdev(asr):.2f}", row


def test_changed_settings_make_only_their_cells_stale(local_runs):
    recipe, out, _, _, _ = local_runs
    store = BenchStore(out)
    nad = recipe.columns["nad"]
    changed = replace(
        recipe, columns={**recipe.columns, "nad": replace(nad, config=replace(nad.config, epochs=2))}
    )
    stale = [c.method for c in enumerate_cells(changed) if store.record(changed, c) is None]
    assert stale == ["nad"] * 4


def test_cli_resumes_and_writes_a_doc_section(local_runs, tmp_path, capsys):
    _, out, _, _, _ = local_runs
    recipe_file = tmp_path / "tiny.toml"
    recipe_file.write_text(RECIPE)
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# doc\n\n<!-- begin tiny -->\nold\n<!-- end tiny -->\n\n<!-- begin other -->\nkept\n")
    assert main(["bench", str(recipe_file), "--out", str(out), "--doc", str(doc), "--quiet"]) == 0
    assert "0 cells computed, 12 already finished" in capsys.readouterr().out
    text = doc.read_text()
    assert "old" not in text and text.count("<!-- begin tiny -->") == 1 and "## Tiny grid" in text
    assert "<!-- begin other -->\nkept" in text
    section = text.split("<!-- begin tiny -->")[1].split("<!-- end tiny -->")[0]
    command = f"mendnet bench {recipe_file} --out {out} --doc {doc}"
    assert f"Recipe `{recipe_file}`, command `{command}`, " in section
    commit = r"(commit `[0-9a-f]+`|uncommitted changes on commit `[0-9a-f]+`, code `[0-9a-f]{12}`)"
    assert re.search(commit, section)
    day = time.strftime("%Y-%m-%d")
    device = device_label(torch.device("cpu"))
    assert f", {day}, device {device}, 1 thread(s) per cell, torch {torch.__version__};" in section
    assert main(["bench", str(tmp_path / "missing.toml"), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("mendnet: error: recipe")


# A grid with a base that cannot be made: no 30-px Trojan patch fits a 28×28 image, so the Trojan base
# fails when it is planted on the clean row's model; the clean and BadNets cells must still be computed.
FAILING = """
name = "failing"
title = "A grid with a base that fails"
[grid]
data = ["fashion-mnist"]
models = ["small-cnn"]
attacks = ["none", "badnets", "trojan"]
repairs = ["finetune"]
seeds = [0]
[run]
train_subset = 600
test_images = 200
clean_fraction = 0.005
attacker_model = "clean"
[train]
epochs = 1
batch_size = 64
lr = 0.05
[poison]
rate = 0.2
[attack.trojan]
size = 30
steps = 1
[repair.finetune]
epochs = 1
"""
TROJAN_CAUSE = (
    "base fashion-mnist--small-cnn--trojan--s0: trojan: a 30px patch with margin 1 does not fit 28×28"
)


def test_a_failed_base_leaves_the_other_cells_computed_and_is_one_error(tmp_path, capsys):
    recipe_file, out = tmp_path / "failing.toml", tmp_path / "out"
    recipe_file.write_text(FAILING)
    ids = [c.id for c in enumerate_cells(recipe_from(FAILING))]
    trojan = [i for i in ids if "--trojan--" in i]
    assert main(["bench", str(recipe_file), "--out", str(out)]) == 2
    said = capsys.readouterr()
    error = said.err.strip().splitlines()[-1]
    assert error == f"mendnet: error: 2 cell(s) not computed: {TROJAN_CAUSE}; the others are in {out}"
    progress = " ".join(said.err.split())  # the progress console wraps long lines
    assert all(f"{i}: not computed ({TROJAN_CAUSE})" in progress for i in trojan)
    assert "4 cells computed, 0 already finished, 2 failed, 0 left" in said.out
    finished = sorted(p.stem for p in (out / "cells").iterdir())
    assert finished == sorted(i for i in ids if i not in trojan) and len(finished) == 4
    assert "--trojan--" not in (out / "results.csv").read_text()
    # nothing of the failed cells was stored: a second run tries them again and computes nothing else
    again = run_bench(recipe_from(FAILING), out, progress=False)
    assert again.computed == [] and sorted(again.failed) == sorted(trojan) and len(again.skipped) == 4
    assert set(again.failed.values()) == {TROJAN_CAUSE}


def test_device_option_overrides_the_recipes_and_is_quoted(local_runs, tmp_path, capsys):
    _, out, _, _, _ = local_runs
    recipe_file = tmp_path / "tiny.toml"
    recipe_file.write_text(RECIPE)  # run.device is the default "cpu": the same cells
    doc = tmp_path / "benchmarks.md"
    argv = ["bench", str(recipe_file), "--out", str(out), "--device", "cpu", "--doc", str(doc), "--quiet"]
    assert main(argv) == 0
    assert "0 cells computed, 12 already finished" in capsys.readouterr().out
    assert f"--device cpu --doc {doc}`" in doc.read_text()


def test_source_hash_follows_python_files_only(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "sub" / "b.py").write_text("y = 2\n")
    first = code.source_hash(tmp_path / "pkg")
    (tmp_path / "pkg" / "notes.txt").write_text("not code")
    assert code.source_hash(tmp_path / "pkg") == first
    (tmp_path / "pkg" / "sub" / "b.py").write_text("y = 3\n")
    assert code.source_hash(tmp_path / "pkg") != first
    (tmp_path / "pkg" / "sub" / "b.py").write_text("y = 2\n")
    assert code.source_hash(tmp_path / "pkg") == first
    (tmp_path / "pkg" / "sub" / "b.py").rename(tmp_path / "pkg" / "sub" / "c.py")
    assert code.source_hash(tmp_path / "pkg") != first


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """A copy of mendnet's source that the code identity hashes instead of the package (a test edits it)."""
    copy = tmp_path / "mendnet"
    shutil.copytree(code.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(code, "PACKAGE", copy)
    code.code_identity.cache_clear()
    yield copy
    code.code_identity.cache_clear()


def test_edited_source_makes_finished_cells_stale(local_runs, package_copy, tmp_path, capsys):
    recipe, out, _, _, _ = local_runs
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    ids = [c.id for c in enumerate_cells(recipe)]
    assert run_bench(recipe, copy, progress=False).computed == []  # the same source: the same code
    with (package_copy / "repair" / "nad.py").open("a") as f:
        f.write("# an edit\n")
    code.code_identity.cache_clear()
    recipe_file = tmp_path / "tiny.toml"
    recipe_file.write_text(RECIPE)
    assert main(["bench", str(recipe_file), "--out", str(copy), "--keep-stale", "--quiet"]) == 0
    assert f"0 cells computed, 0 already finished, {CELLS} stale kept" in capsys.readouterr().out
    results = json.loads((copy / "results.json").read_text())
    assert results["stale"] == ids and results["code"] == code.code_identity()
    tables = (copy / "tables.md").read_text()
    assert tables.count("†") > CELLS // 2 and f"{CELLS} of the {CELLS} were computed by other code" in tables
    summary = run_bench(recipe, copy, max_cells=1, progress=False)  # without --keep-stale: recomputed
    assert summary.computed == ids[:1] and summary.missing == ids[1:] and not summary.skipped
    base = enumerate_cells(recipe)[0].base
    meta = json.loads((copy / "models" / base.id / "model.json").read_text())
    assert meta["bench_code"] == code.code_identity()  # its base was trained again with the new code
    assert json.loads((copy / "results.json").read_text())["stale"] == ids[1:]


def test_commit_text_names_the_commit_or_the_code():
    identity = {"version": "0.1.0", "source": "0123456789abcdef" * 4}
    assert commit_text(("abc1234", False), identity) == "commit `abc1234`"
    dirty = commit_text(("abc1234", True), identity)
    assert dirty == "uncommitted changes on commit `abc1234`, code `0123456789ab`"
    assert commit_text(None, identity) == "no git commit, code `0123456789ab`"


def test_git_state_sees_changes_to_the_given_paths_only(tmp_path):
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "m.py").write_text("x = 1\n")
    (repo / "docs.md").write_text("doc\n")

    def git(*args):
        ident = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
        subprocess.run(["git", *ident, "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "init")
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    outside = tmp_path / "recipe.toml"
    outside.write_text("")
    assert git_state([repo / "src", outside]) == (head, False)
    (repo / "docs.md").write_text("changed\n")
    assert git_state([repo / "src", outside]) == (head, False)  # not a path of the code
    (repo / "src" / "new.py").write_text("")
    assert git_state([repo / "src", outside]) == (head, True)
    assert git_state([tmp_path]) is None


class FakeRay:
    """The calls run_ray makes around a run with nothing to do: whether it starts and stops an instance."""

    def __init__(self, running: bool) -> None:
        self.running = running
        self.calls: list = []

    def is_initialized(self) -> bool:
        return self.running

    def init(self, address=None, **kwargs) -> None:
        self.calls.append(("init", address))
        self.running = True

    def shutdown(self) -> None:
        self.calls.append("shutdown")
        self.running = False

    def remote(self, function):
        return type("Remote", (), {"options": lambda self, **kw: None})()

    def cluster_resources(self) -> dict:
        return {"CPU": 2}


@pytest.mark.parametrize("running", [False, True])
def test_run_ray_starts_an_instance_when_none_runs_and_stops_only_its_own(monkeypatch, tmp_path, running):
    """The real Ray tests below share one running instance; this checks the start and stop around it."""
    from mendnet.bench import engines

    fake = FakeRay(running)
    monkeypatch.setattr(engines, "import_ray", lambda: fake)
    recipe = recipe_from(RECIPE)
    engines.run_ray(recipe, BenchStore(tmp_path), [], set(), print, print, address="ray://head:10001")
    assert fake.calls == ([] if running else [("init", "ray://head:10001"), "shutdown"])
    assert fake.running is running


@pytest.fixture(scope="module")
def ray_running():
    """A local Ray instance shared by the Ray tests (each start and stop costs seconds, and its workers
    keep torch imported between them), or a failure naming the install step (`make test` installs it
    with the dev extras). run_ray uses a running instance and leaves it running (checked below)."""
    try:
        import ray
    except ImportError:
        pytest.fail("ray is not installed; `make test` installs it with the dev extras")
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_ray_gives_the_same_results_as_local(ray_running, local_runs, tmp_path, capsys):
    recipe, out, _, _, second = local_runs
    # the first seed's half of the grid (a cell's identity does not depend on the other seeds)
    recipe = replace(recipe, grid=replace(recipe.grid, seeds=recipe.grid.seeds[:1]))
    summary = run_bench(recipe, tmp_path / "ray", engine="ray")
    ids = [c.id for c in enumerate_cells(recipe)]
    said = capsys.readouterr().err  # the start, each base as it is trained, each cell as it finishes
    bases_trained = {c.base.id for c in enumerate_cells(recipe)}
    assert f"{len(ids)} cells to compute, 0 already finished" in said
    assert f"ray: {len(bases_trained)} base models to train and {len(ids)} cells" in said
    assert all(f"ray: base {b} trained" in said for b in bases_trained)
    assert said.count(f"/{len(ids)}] ") == len(ids)
    assert sorted(summary.computed) == sorted(ids) and len(ids) == CELLS // 2
    local = {r["id"]: (without_seconds(r), r["source"]) for r in second.records if r["id"] in ids}
    remote = {r["id"]: (without_seconds(r), r["source"]) for r in summary.records}
    assert remote == local  # the same models taken by NAD (the weights digests of FT's models)
    assert all(r["source"]["cell"].endswith("--finetune") for r in summary.records if r["method"] == "nad")
    bases = sorted(p.name for p in (tmp_path / "ray" / "models").iterdir())
    assert bases == sorted({c.base.id for c in enumerate_cells(recipe)})
    for base in bases:  # bit-identical trained models
        mine = (tmp_path / "ray" / "models" / base / "model.safetensors").read_bytes()
        assert mine == (out / "models" / base / "model.safetensors").read_bytes(), base
    assert ray_running.is_initialized()  # an instance it did not start is left running


def test_ray_leaves_out_the_cells_of_a_failed_base(ray_running, tmp_path):
    # the failing grid's clean row and Trojan base only (the smallest grid with a base that fails)
    text = FAILING.replace('"none", "badnets", "trojan"', '"none", "trojan"').replace('"finetune"', "")
    recipe = recipe_from(text.replace("[repair.finetune]\nepochs = 1\n", ""))
    summary = run_bench(recipe, tmp_path / "ray", engine="ray", progress=False)
    assert summary.computed == ["fashion-mnist--small-cnn--none--s0--none"]
    assert summary.failed == {"fashion-mnist--small-cnn--trojan--s0--none": TROJAN_CAUSE}


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parent.parent.glob("recipes/*.toml")))
def test_shipped_recipes_parse(path):
    recipe = load_recipe(path)
    assert enumerate_cells(recipe)


def test_robustifier_cells_get_their_teachers():
    from mendnet import registry

    text = RECIPE.replace('attacks = ["badnets", "blend"]', 'robustifiers = "all"').replace(
        'repairs = ["finetune", "nad"]', ""
    )
    text = text[: text.index("[attack.blend]")]
    recipe = recipe_from(text)
    cells = [c for c in enumerate_cells(recipe) if c.base.seed == 0]
    assert [c.method for c in cells] == ["natural", *registry.ROBUSTIFIERS]
    natural = cells[0].base
    for cell in cells[1:]:
        role = ROBUSTIFIERS[cell.method].teacher
        if role == "natural":
            assert cell.teacher == natural
        elif role == "robust":
            assert cell.teacher.teacher == "pgd-at" and cell.teacher.id.endswith("teacher-pgd-at--s0")
        else:
            assert cell.teacher is None
    assert {ROBUSTIFIERS[c.method].teacher for c in cells[1:]} >= {
        None,
        "natural",
        "robust",
    }
