"""The `mendnet` command end to end on real data, and its one-line errors on bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mendnet.artefact import save_artefact
from mendnet.cli import main
from mendnet.data.ref import DataRef, data_of
from mendnet.demo import DemoConfig
from mendnet.models import ModelSpec, build_classifier
from tests.test_backdoor_zoo import write_idx


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mendnet: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, fmnist):
    """A quick poisoned small-cnn trained, evaluated and fine-tuned through the CLI, on a small
    Fashion-MNIST folder (the first 6,000 training and 1,000 test images: this checks the commands, and
    every command measures the test set)."""
    root = tmp_path_factory.mktemp("cli")
    data_dir = root / "fashion-mnist"
    data_dir.mkdir()
    train, test = fmnist
    write_idx(
        data_dir, train.subset(torch.arange(6000)), "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
    )
    write_idx(data_dir, test.subset(torch.arange(1000)), "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    args = [
        "train",
        "--model",
        "small-cnn",
        "--data-dir",
        data_dir,
        "--train-subset",
        "3000",
        "--epochs",
        "1",
        "--attack",
        "badnets",
        "--rate",
        "0.1",
        "--lr",
        "0.05",
        "--out",
        root / "bd",
        "--quiet",
    ]
    assert main([str(a) for a in args]) == 0
    return root


def test_train_eval_repair_attention(cli_run, capsys):
    meta = json.loads((cli_run / "bd" / "model.json").read_text())
    assert meta["threat"]["attack"] == "badnets" and meta["threat"]["poisoned_count"] == 300
    metrics = json.loads((cli_run / "bd" / "metrics.json").read_text())
    code, out, _ = run_cli(capsys, "eval", cli_run / "bd", "--json", cli_run / "eval.json")
    assert code == 0 and "ASR" in out
    again = json.loads((cli_run / "eval.json").read_text())
    assert again["acc"] == pytest.approx(metrics["acc"]) and again["asr"] == pytest.approx(metrics["asr"])
    code, out, _ = run_cli(
        capsys,
        "repair",
        "finetune",
        "--model",
        cli_run / "bd",
        "--epochs",
        "1",
        "--clean-fraction",
        "0.02",
        "--out",
        cli_run / "ft",
        "--quiet",
    )
    assert code == 0
    ft = json.loads((cli_run / "ft" / "metrics.json").read_text())
    assert set(ft) >= {"acc", "asr", "ra", "der", "seconds", "before"}
    code, _, _ = run_cli(
        capsys,
        "attention",
        cli_run / "bd",
        cli_run / "ft",
        "--images",
        "2",
        "--out",
        cli_run / "att.png",
    )
    assert code == 0 and (cli_run / "att.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_existing_output_is_refused(cli_run, capsys):
    before = sorted(p.name for p in (cli_run / "bd").iterdir())
    code, _, err = run_cli(capsys, "repair", "finetune", "--model", cli_run / "bd", "--out", cli_run / "bd")
    assert_one_line_error(code, err, "already exists", "--force")
    assert sorted(p.name for p in (cli_run / "bd").iterdir()) == before


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--attack", "badnets", "--target", "12"], ["target label 12", "[0, 10)"]),
        (["--attack", "badnets", "--rate", "1.5"], ["rate must lie in (0, 1]"]),
        (["--attack", "badnets", "--rate", "0"], ["rate must lie in (0, 1]"]),
        (["--attack", "nosuch"], ["unknown attack", "badnets"]),
        (["--epochs", "0"], ["epochs must be ≥ 1"]),
    ],
)
def test_bad_training_settings(tmp_path, capsys, argv, fragments):
    out = tmp_path / "never"
    code, _, err = run_cli(
        capsys, "train", "--model", "small-cnn", "--train-subset", "100", "--out", out, *argv
    )
    assert_one_line_error(code, err, *fragments)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_missing_data_set_names_where_it_looked(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MENDNET_DATA", raising=False)
    code, _, err = run_cli(
        capsys, "train", "--data", "cifar10", "--data-dir", tmp_path, "--out", tmp_path / "o"
    )
    assert_one_line_error(code, err, str(tmp_path), "--download")
    assert not (tmp_path / "o").exists()


def test_corrupt_idx_file(tmp_path, capsys):
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (tmp_path / name).write_bytes(b"\x00\x00\x08\x03garbage")
    code, _, err = run_cli(capsys, "train", "--data-dir", tmp_path, "--out", tmp_path / "o")
    assert_one_line_error(code, err, "idx3-ubyte")


def small_artefact(path, num_classes=10):
    spec = ModelSpec("small-cnn", num_classes, (1, 28, 28), (0.286,), (0.353,))
    meta = {"data": {"name": "fashion-mnist", "data_dir": None}, "threat": None}
    return save_artefact(path, build_classifier(spec), meta, {})


def test_corrupt_weights_and_class_mismatch(tmp_path, capsys):
    art = small_artefact(tmp_path / "a")
    weights = art / "model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}junk")
    code, _, err = run_cli(capsys, "eval", art)
    assert_one_line_error(code, err, "model.safetensors")
    weights.write_bytes(original)
    five = small_artefact(tmp_path / "five", num_classes=5)
    code, _, err = run_cli(capsys, "eval", five)
    assert_one_line_error(code, err, "5 classes", "10")
    bare = tmp_path / "w.pt"
    torch.save(
        build_classifier(ModelSpec("small-cnn", 5, (1, 28, 28), (0.3,), (0.3,))).net.state_dict(),
        bare,
    )
    code, _, err = run_cli(capsys, "eval", bare, "--arch", "small-cnn", "--data", "fashion-mnist")
    assert_one_line_error(code, err, "do not fit")


def test_defender_fraction_too_small(tmp_path, capsys):
    art = small_artefact(tmp_path / "a")
    code, _, err = run_cli(
        capsys,
        "repair",
        "nad",
        "--model",
        art,
        "--clean-fraction",
        "0.0001",
        "--out",
        tmp_path / "o",
    )
    assert_one_line_error(code, err, "6 defender images", "at least 10")
    assert not (tmp_path / "o").exists()


def test_image_size_reaches_the_folder_images(tmp_path, capsys):
    """--image-size resizes an image folder's images; the artefact records the size, so `eval` reloads
    the images at it (at the default 32 px the 16 px model would not fit them)."""
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for i, rel in enumerate(("train/a", "train/a", "train/b", "train/b", "test/a", "test/b")):
        (data / rel).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20, 12, 3), dtype=np.uint8)).save(data / rel / f"{i}.png")
    assert DataRef("imagefolder", str(data), 16).split("test").shape == (3, 16, 16)
    pair = json.loads(json.dumps(DataRef("imagefolder", str(data), (8, 10)).to_json()))
    assert DataRef.from_json(pair).split("test").shape == (3, 8, 10)
    art = tmp_path / "art"
    argv = ["train", "--data", "imagefolder", "--data-dir", data, "--image-size", 16, "--model", "small-cnn"]
    code, _, err = run_cli(capsys, *argv, "--epochs", "1", "--batch-size", "2", "--out", art, "--quiet")
    assert code == 0, err
    meta = json.loads((art / "model.json").read_text())
    assert meta["model"]["input_shape"] == [3, 16, 16] and meta["data"]["image_size"] == 16
    code, out, err = run_cli(capsys, "eval", art)
    assert code == 0 and "evaluation" in out, err
    older = {"data": {"name": "imagefolder", "data_dir": str(data)}}  # written before sizes were recorded
    assert data_of(older) == DataRef("imagefolder", str(data), 32)


def test_help_of_every_command(capsys):
    result = subprocess.run([sys.executable, "-m", "mendnet.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "usage: mendnet" in result.stdout, result.stderr
    for argv in (
        ["train"],
        ["eval"],
        ["repair", "nad"],
        ["repair", "finetune"],
        ["attention"],
        ["attack"],
        ["demo"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--help"])
        assert exit_info.value.code == 0
        assert "usage: mendnet" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["repair", "nad", "--help"])
    nad_help = capsys.readouterr().out
    assert "--betas" in nad_help and "--teacher" in nad_help and "500.0" in nad_help
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert f"(default: the demo's {DemoConfig.epochs})" in " ".join(capsys.readouterr().out.split())
