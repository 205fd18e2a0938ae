"""Adversarial attacks on a Fashion-MNIST model trained in the test session (docs/methods.md §5)."""

import json

import pytest
import torch

from mendnet.artefact import save_artefact
from mendnet.cli import main
from mendnet.threats.adversarial import FGSM, PGD, make_attack, robust_accuracy

N = 500


@pytest.fixture(scope="module")
def test_subset(fmnist):
    return fmnist[1].subset(torch.arange(N))


def test_pgd_breaks_the_model_and_is_never_weaker_than_fgsm(clean_small_cnn, test_subset):
    model = clean_small_cnn.model
    result = robust_accuracy(
        model, test_subset, attacks={"fgsm": FGSM(eps=0.1), "pgd": PGD(eps=0.1, steps=20)}, progress=False
    )
    assert result.clean_acc >= 0.80, result
    assert result.per_attack["pgd"] < 0.10, result
    assert result.per_attack["pgd"] <= result.per_attack["fgsm"], result
    assert result.worst_case <= min(result.per_attack.values())


def test_cascade_gives_the_same_worst_case(clean_small_cnn, test_subset):
    attacks = {"fgsm": FGSM(eps=0.05), "pgd": PGD(eps=0.05, steps=5, random_start=False)}
    full = robust_accuracy(clean_small_cnn.model, test_subset, attacks=attacks, progress=False)
    cheap = robust_accuracy(clean_small_cnn.model, test_subset, attacks=attacks, progress=False, cascade=True)
    assert cheap.worst_case == full.worst_case
    assert cheap.per_attack["fgsm"] == full.per_attack["fgsm"]


def test_greyscale_28_default_budget_is_0_1():
    assert make_attack("pgd-linf", (1, 28, 28)).eps == pytest.approx(0.1)
    assert make_attack("pgd-linf", (3, 32, 32)).eps == pytest.approx(8 / 255)
    assert make_attack("pgd-linf", (1, 28, 28), eps=0.2).eps == pytest.approx(0.2)
    assert make_attack("pgd-l2", (1, 28, 28)).eps == pytest.approx(0.5)


def test_attack_command(clean_small_cnn, tmp_path, capsys):
    art = save_artefact(tmp_path / "m", clean_small_cnn.model, clean_small_cnn.meta, clean_small_cnn.metrics)
    files_before = {p.name: p.read_bytes() for p in art.iterdir()}
    code = main(
        [
            "attack",
            str(art),
            "--attack",
            "fgsm",
            "--attack",
            "pgd-linf",
            "--eps",
            "8/255",
            "--steps",
            "5",
            "--images",
            "200",
            "--png",
            str(tmp_path / "adv.png"),
            "--quiet",
        ]
    )
    assert code == 0
    report = json.loads((art / "robustness.json").read_text())
    assert report["n"] == 200 and set(report["robust_acc"]) == {
        "fgsm(eps=0.0314)",
        "pgd-linf(eps=0.0314,steps=5)",
    }
    assert report["worst_case"] <= min(report["robust_acc"].values()) <= report["clean_acc"]
    assert (tmp_path / "adv.png").read_bytes()[:4] == b"\x89PNG"
    assert {p.name: p.read_bytes() for p in art.iterdir() if p.name != "robustness.json"} == files_before
    assert main(["attack", str(art), "--images", "10", "--quiet"]) == 2  # exists without --force
    assert main(["attack", str(art), "--eps", "-1", "--force", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "eps must be a finite number > 0" in err and "Traceback" not in err
