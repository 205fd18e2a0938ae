"""`run.aa_check` (issue 30): every robustness report that runs AutoAttack also runs the authors' package
directly on the same images with the same settings (`autoattack.package_run`), records both robust
accuracies, their difference, seconds and a flag above 0.5 points, and the results list them; on an
untrained 64-32-10 MLP whose labels are its own predictions (no training: the file takes seconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from mendnet.artefact import Artefact
from mendnet.bench import load_recipe, parse_recipe, smoke_recipe
from mendnet.bench.cells import cell_spec, enumerate_cells
from mendnet.bench.docs import Provenance
from mendnet.bench.grid import NATURAL
from mendnet.bench.inputs import Inputs
from mendnet.bench.recipe import tomllib
from mendnet.bench.results import markdown_tables
from mendnet.bench.robust_cells import natural_report
from mendnet.bench.run import settings_line
from mendnet.bench.work import NOT_METRICS, flat_metrics
from mendnet.data.imageset import ImageSet, to_uint8
from mendnet.errors import MendnetError
from mendnet.robust import evaluation
from mendnet.threats.adversarial import AutoAttack
from mendnet.threats.adversarial.autoattack import PackageRun, package_run

pytestmark = pytest.mark.usefixtures("one_thread")

K = 10
CLASSES = tuple("abcdefghij")
RECIPES = Path(__file__).resolve().parent.parent / "recipes"
RECIPE = """
name = "aa-check"
[grid]
data = ["fashion-mnist"]
models = ["small-cnn"]
robustifiers = ["pgd-at"]
seeds = [0]
[run]
eval_eps = 0.1
aa_images = 8
aa_check = true
"""


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, K)).eval()


@pytest.fixture(scope="module")
def points(net) -> tuple[torch.Tensor, torch.Tensor]:
    """16 random 1×8×8 images on the uint8 grid, labelled with the net's predictions (all correct clean)."""
    x = to_uint8(torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))).float() / 255
    with torch.no_grad():
        return x, net(x).argmax(1)


def recipe_from(text: str):
    return parse_recipe(tomllib.loads(text))


def _without_check(spec: Any) -> Any:
    """`spec` with every "aa_check" key removed, at any depth."""
    if isinstance(spec, dict):
        return {k: _without_check(v) for k, v in spec.items() if k != "aa_check"}
    return spec


def test_package_run_is_mendnets_autoattack(net, points):
    x, y = points
    eps = 0.02  # APGD-CE breaks some points, not all
    ours = AutoAttack(eps=eps, seed=0, aa_attacks="apgd-ce").run(net, x, y, batch_size=16)
    net.train()
    direct = package_run(net, x, y, eps=eps, seed=0, attacks=["apgd-ce"], batch_size=16)
    assert net.training and all(p.requires_grad and p.grad is None for p in net.parameters())
    net.eval()
    assert torch.equal(direct.x_adv, ours.x_adv) and torch.equal(direct.robust, ours.robust)
    assert 0 < direct.accuracy == int(ours.robust.sum()) / len(y) < 1 and direct.seconds > 0


def test_the_bench_report_records_the_package_beside_mendnet(net, points):
    x, y = points
    images = ImageSet(to_uint8(x), y, classes=CLASSES, mean=(0.5,), std=(0.25,))
    recipe = recipe_from(RECIPE)
    cpu = torch.device("cpu")
    inputs = Inputs(Artefact(net, {}, {"acc": 1.0}), (images, images), None, None, None, 0, cpu, False)
    done = natural_report(recipe, inputs)
    metrics, info = done.metrics, done.info
    package = info["aa"]["package"]
    assert info["aa"]["images"] == 8 and sum(info["aa"]["broken_by"].values()) > 0
    assert metrics["aa_package"] == metrics["autoattack"] == package["robust"]
    assert metrics["aa_package_diff"] == package["difference"] == 0.0
    assert metrics["aa_package_flag"] == 0.0 and package["flag"] is False
    assert metrics["aa_package_seconds"] == package["seconds"] > 0 and metrics["aa_seconds"] > 0
    for key in NOT_METRICS:  # as run_cell keeps them
        info[key] = metrics.pop(key)
    record = {"id": "n", "data": "fashion-mnist", "model": "small-cnn", "attack": NATURAL}
    record |= {"method": NATURAL, "seed": 0, "kind": "base", "metrics": flat_metrics(metrics), "info": info}
    text = markdown_tables(recipe, [record])
    assert "**AutoAttack against the authors' package**" in text and "aa_package" not in text
    line = next(row for row in text.splitlines() if row.startswith("| natural | natural | 0 | 8 |"))
    assert "| standard | 0.1 |" in line and "| +0.00 |" in line and line.endswith("| – |")
    assert "**AutoAttack (standard version) %**" in text
    assert "**PGD-20 − AutoAttack (on AutoAttack's images) %**" in text
    line = settings_line(recipe, [record], 1, {}, Provenance("r.toml", "mendnet bench r.toml", "c", "today"))
    assert ", test images all, AutoAttack on the first 8 of them, defender data" in line


@pytest.mark.parametrize(
    ("ours", "theirs", "flag"),
    [(100, 100, False), (100, 99, False), (99, 100, False), (100, 98, True), (97, 100, True)],
)
def test_the_flag_is_a_difference_above_half_a_point(monkeypatch, net, ours, theirs, flag):
    n, seen = 200, {}

    def direct(model, x, y, **settings):
        seen.update(settings)
        return PackageRun(x, torch.arange(len(y)) < theirs, 1.5)

    monkeypatch.setattr(evaluation, "package_run", direct)
    zeros = torch.zeros(n, 1, 8, 8, dtype=torch.uint8)
    images = ImageSet(zeros, torch.zeros(n, dtype=torch.long), classes=CLASSES, mean=(0.5,), std=(0.25,))
    attack = AutoAttack(eps=0.1, seed=3)
    check = evaluation.package_check(net, images, attack, ours / n, 500, "cpu")
    assert check["flag"] is flag and check["seconds"] == 1.5 and check["robust"] == theirs / n
    assert check["difference"] == pytest.approx((ours - theirs) / n, abs=1e-12)
    assert seen == {"eps": 0.1, "norm": "linf", "version": "standard", "seed": 3, "batch_size": 500}


def test_the_identity_changes_only_with_the_check_on():
    grid = '["pgd-at", "shafahi"]\nattacks = ["badnets"]\nrepairs = ["finetune"]'
    text = RECIPE.replace('["pgd-at"]', grid)
    on = recipe_from(text)
    off = recipe_from(text.replace("aa_check = true", "aa_check = false"))
    absent = recipe_from(text.replace("aa_check = true", ""))
    cells = enumerate_cells(on)
    assert cells == enumerate_cells(off) == enumerate_cells(absent)
    robust = {c.id for c in cells if c.base.attack is None}
    assert len(robust) == 3  # natural, pgd-at, shafahi (whose robust teacher's spec is in its own)
    for cell in cells:
        spec = cell_spec(on, cell)
        assert cell_spec(off, cell) == cell_spec(absent, cell) == _without_check(spec)
        assert (spec != _without_check(spec)) == (cell.id in robust)
        assert spec.get("aa_check", False) == (cell.id in robust)
    shafahi = next(c for c in cells if c.method == "shafahi")
    assert cell_spec(on, shafahi)["teacher"]["aa_check"] is True


def test_the_recipe_checks_500_images_and_its_smoke_run_checks_none():
    recipe = load_recipe(RECIPES / "autoattack_check.toml")
    run = recipe.run
    assert run.aa_check and run.aa_images == 500 and recipe.grid.robustifiers == ("pgd-at",)
    assert recipe.grid.seeds == (0,) and run.eval_eps is None
    assert all(cell_spec(recipe, c)["aa_check"] for c in enumerate_cells(recipe))
    smoke = smoke_recipe(recipe)
    assert not smoke.run.aa_check and smoke.run.aa_images == 0
    assert not any("aa_check" in cell_spec(smoke, c) for c in enumerate_cells(smoke))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("aa_check = true", 'aa_check = "yes"'), "run.aa_check must be true or false, got 'yes'"),
        (
            ("aa_images = 8", "aa_images = 0"),
            "run.aa_check checks AutoAttack's images, but run.aa_images is 0",
        ),
        (
            ('robustifiers = ["pgd-at"]', 'attacks = ["badnets"]\nrepairs = ["finetune"]'),
            "run.aa_check checks the robust rows' AutoAttack, but grid.robustifiers is empty",
        ),
        (("aa_check = true", "aa_chek = true"), "run: unknown setting aa_chek; valid: .*aa_check"),
    ],
)
def test_bad_recipe_settings_are_one_line_errors(change, message):
    old, new = change
    assert old in RECIPE
    with pytest.raises(MendnetError, match=message) as info:
        recipe_from(RECIPE.replace(old, new))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"norm": "l1"}, "unknown AutoAttack norm 'l1'; known: linf, l2"),
        ({"version": "fast"}, "unknown AutoAttack version 'fast'; known: standard, plus, rand"),
        ({"attacks": ["apgd-ce", "pgd"]}, "unknown AutoAttack component 'pgd'; known: apgd-ce"),
        ({"batch_size": 0}, "batch_size must be an integer ≥ 1, got 0"),
    ],
)
def test_bad_package_run_settings_are_one_line_errors(net, points, settings, message):
    x, y = points
    with pytest.raises(MendnetError, match=message) as info:
        package_run(net, x, y, **{"eps": 0.1, **settings})
    assert "\n" not in str(info.value)
