"""Bad input to the `mendnet` command (issue #28): one line `mendnet: error: ...`, exit status 2, checked
before any long work, nothing half-written left behind. Each test fails fast on a tiny artefact."""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
import torch

from mendnet import progress
from mendnet.artefact import save_artefact
from mendnet.cli import app, main
from mendnet.cli.train import typed_attack_params
from mendnet.data import catalog, download
from mendnet.data.download import Remote, Source
from mendnet.errors import MendnetError
from mendnet.models import ModelSpec, build_classifier

UNWRITABLE = Path("/proc/mendnet-test-out")  # no process can create files in /proc, root included
SMOKE_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "smoke.toml"
needs_proc = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mendnet: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def art(tmp_path):
    """An untrained small-CNN artefact for Fashion-MNIST (saved in a few milliseconds)."""
    spec = ModelSpec("small-cnn", 10, (1, 28, 28), (0.286,), (0.353,))
    meta = {"data": {"name": "fashion-mnist", "data_dir": None}, "threat": None}
    return save_artefact(tmp_path / "art", build_classifier(spec), meta, {})


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# 1. eval --json


def test_eval_json_in_a_missing_folder(art, tmp_path, capsys):
    target = tmp_path / "no" / "such" / "eval.json"
    code, _, err = run_cli(capsys, "eval", art, "--json", target)
    assert_one_line_error(code, err, "cannot write", str(tmp_path / "no" / "such"), "does not exist")
    assert not (tmp_path / "no").exists()


def test_eval_json_that_is_a_folder(art, tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    code, _, err = run_cli(capsys, "eval", art, "--json", folder)
    assert_one_line_error(code, err, str(folder), "is a folder")
    assert list(folder.iterdir()) == []


# 2. and 5. every command checks that its outputs can be written before it starts


@needs_proc
@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--model", "small-cnn", "--out", UNWRITABLE],
        ["poison", "--attack", "badnets", "--out", UNWRITABLE],
        ["repair", "finetune", "--model", "ART", "--out", UNWRITABLE],
        ["detect", "ART", "--out", UNWRITABLE],
        ["locate", "ART", "--out", UNWRITABLE],
        ["robustify", "pgd-at", "--out", UNWRITABLE],
        ["audit", "ART", "--out", UNWRITABLE],
        ["mend", "ART", "--out", UNWRITABLE],
        ["demo", "--out", UNWRITABLE],
        ["attention", "ART", "ART", "--out", UNWRITABLE / "a.png"],
        ["attention", "ART", "ART", "--out", Path("/proc/a.png")],
        ["attack", "ART", "--out", Path("/proc/x.json")],
        ["attack", "ART", "--png", Path("/proc/g.png"), "--out", "TMP/r.json"],
        ["eval", "ART", "--json", Path("/proc/e.json")],
        ["bench", SMOKE_RECIPE, "--out", UNWRITABLE],
        ["bench", SMOKE_RECIPE, "--out", "TMP/bench", "--doc", Path("/proc/doc.md")],
    ],
    ids=lambda argv: "-".join(str(a) for a in argv[:2]).replace("/", "_")[-40:],
)
def test_unwritable_output_is_refused_before_work(argv, art, tmp_path, capsys):
    before = files_under(art)
    argv = [str(a).replace("ART", str(art)).replace("TMP", str(tmp_path)) for a in argv]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, "cannot write")
    assert files_under(art) == before  # the input artefact is never modified
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


@needs_proc
def test_audit_to_an_unwritable_folder_never_starts(art, capsys, monkeypatch):
    audit_command = importlib.import_module("mendnet.cli.audit")

    def must_not_run(*args, **kwargs):
        raise AssertionError("the audit started before its output was checked")

    monkeypatch.setattr(audit_command, "load_model", must_not_run)
    monkeypatch.setattr(audit_command, "audit_model", must_not_run)
    code, _, err = run_cli(capsys, "audit", art, "--out", UNWRITABLE / "audit")
    assert_one_line_error(code, err, "cannot write", "/proc")


def test_output_under_a_file_is_refused(art, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "repair", "finetune", "--model", art, "--out", blocker / "out")
    assert_one_line_error(code, err, "cannot write", "is not a folder")
    assert blocker.read_text() == "x"


def test_bench_on_a_missing_device_is_refused_before_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "bench"
    code, _, err = run_cli(capsys, "bench", SMOKE_RECIPE, "--device", "cuda", "--out", out)
    assert_one_line_error(code, err, "cuda", "no CUDA GPU")
    assert not out.exists()


# 3. bench given a folder


def test_bench_given_a_folder(tmp_path, capsys):
    code, _, err = run_cli(capsys, "bench", tmp_path, "--out", tmp_path / "out")
    assert_one_line_error(code, err, str(tmp_path), "is a folder", "recipe")
    assert list(tmp_path.iterdir()) == []


# 4. a user's module:factory that raises


@pytest.fixture
def failing_factory(tmp_path):
    path = tmp_path / "user_net.py"
    path.write_text(
        "def factory(num_classes):\n"
        "    raise ValueError('weights not found: /nowhere/net.pt\\nsecond line of the message')\n"
    )
    return f"{path}:factory"


def test_eval_weights_with_a_raising_factory(art, failing_factory, tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "eval", art / "model.safetensors", "--arch", failing_factory, "--data", "fashion-mnist"
    )
    assert_one_line_error(code, err, failing_factory, "ValueError: weights not found: /nowhere/net.pt")
    assert "second line" not in err


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--candidates", "fst,nope"], ("unknown candidate nope",)),
        (["--val-share", "1.5"], ("val_share",)),
        (["--candidates", ","], ("at least one candidate",)),
        (["--acc-tolerance", "150"], ("--acc-tolerance", "[0, 100] points")),
        (["--acc-tolerance", "nan"], ("--acc-tolerance",)),
    ],
)
def test_mend_refuses_impossible_settings_before_work(art, tmp_path, capsys, extra, words):
    code, _, err = run_cli(capsys, "mend", art, "--out", tmp_path / "m", *extra)
    assert_one_line_error(code, err, *words)
    assert not (tmp_path / "m").exists()


def test_mend_takes_its_accuracy_tolerance_in_points(art, tmp_path, capsys, monkeypatch):
    from mendnet.cli import mend as mend_command

    seen = []

    def stop(art, config, **kwargs):
        seen.append(config)
        raise MendnetError("stopped after the settings")

    monkeypatch.setattr(mend_command, "mend_artefact", stop)
    code, _, err = run_cli(capsys, "mend", art, "--out", tmp_path / "m", "--acc-tolerance", "1.5")
    assert_one_line_error(code, err, "stopped after the settings")
    assert seen[0].rule.acc_tolerance == pytest.approx(0.015) and seen[0].rule.clean_tolerance == 0.005


def test_audit_of_a_raising_factory(failing_factory, tmp_path, capsys):
    out = tmp_path / "audit"
    code, _, err = run_cli(capsys, "audit", failing_factory, "--data", "fashion-mnist", "--out", out)
    assert_one_line_error(code, err, failing_factory, "ValueError")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["user_net.py"]


# 6. --data-dir that does not exist


@pytest.mark.parametrize("command", [["train", "--model", "small-cnn"], ["demo"]])
def test_missing_data_dir_is_an_error(command, tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "folder"
    code, _, err = run_cli(capsys, *command, "--data-dir", missing, "--out", tmp_path / "o")
    assert_one_line_error(code, err, f"data folder {missing} does not exist")
    assert list(tmp_path.iterdir()) == []


def test_data_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, _, err = run_cli(capsys, "train", "--data-dir", tmp_path / "f", "--out", tmp_path / "o")
    assert_one_line_error(code, err, "is not a folder")
    assert not (tmp_path / "o").exists()


# 7. typed --attack-param


@pytest.mark.parametrize(
    ("attack", "param", "fragments"),
    [
        ("badnets", "size=abc", ["--attack-param size: expected an integer, got 'abc'"]),
        ("badnets", "size=2.5", ["--attack-param size: expected an integer, got '2.5'"]),
        ("blend", "alpha=lots", ["--attack-param alpha: expected a number, got 'lots'"]),
        ("trojan", "chosen=3", ["--attack-param chosen: expected a JSON list"]),
        ("badnets", "colour=red", ["colour", "badnets", "known: size, margin, clean_label, clean_model"]),
    ],
)
def test_bad_attack_params(attack, param, fragments, tmp_path, capsys):
    argv = ["train", "--attack", attack, "--attack-param", param, "--out", tmp_path / "o"]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_attack_params_take_the_trigger_field_types():
    params = typed_attack_params(
        "trojan", [("size", "4"), ("lr", "1/10"), ("chosen", "[1, 2]"), ("reached", "none")]
    )
    assert params == (("size", 4), ("lr", 0.1), ("chosen", [1, 2]), ("reached", None))
    assert typed_attack_params("blend", [("pattern", "p.png"), ("clean_label", "1")]) == (
        ("pattern", "p.png"),
        ("clean_label", 1),
    )


# 8. --download is wired (the network is never touched: download.fetch is replaced)


def idx_gz(arr: np.ndarray, magic: int) -> bytes:
    return gzip.compress(struct.pack(f">I{arr.ndim}I", magic, *arr.shape) + arr.astype(np.uint8).tobytes())


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """A 4-image 'MNIST' published on a fake mirror; returns the list of URLs fetched."""
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (4, 28, 28)), np.arange(4)
    files = {
        f"{p}-{n}-ubyte.gz": idx_gz(a, m)
        for p in ("train", "t10k")
        for n, a, m in (("images-idx3", images, 0x803), ("labels-idx1", labels, 0x801))
    }
    md5 = {name: hashlib.md5(data, usedforsecurity=False).hexdigest() for name, data in files.items()}
    remotes = tuple(Remote(name, md5[name], ("https://mirror.invalid/",)) for name in files)
    monkeypatch.setitem(download.SOURCES, "mnist", Source(remotes))
    monkeypatch.delenv(catalog.ENV_VAR, raising=False)
    monkeypatch.setattr(catalog, "SYSTEM_DATA_DIR", tmp_path / "system")
    asked: list[str] = []

    def fake_fetch(url: str, out: BinaryIO) -> None:
        asked.append(url)
        out.write(files[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(download, "fetch", fake_fetch)
    return asked


def test_download_flag_fetches_into_a_new_data_dir(art, fake_mnist, tmp_path, capsys):
    data = tmp_path / "data"
    code, out, err = run_cli(capsys, "eval", art, "--data", "mnist", "--download", "--data-dir", data)
    assert code == 0, err
    assert len(fake_mnist) == 4 and len(list((data / "mnist").iterdir())) == 4
    assert "evaluation" in out


def test_download_failure_is_one_line(fake_mnist, tmp_path, capsys, monkeypatch):
    def unreachable(url: str, out: BinaryIO) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(download, "fetch", unreachable)
    argv = ["train", "--data", "mnist", "--download", "--data-dir", tmp_path / "d", "--out", tmp_path / "o"]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, "could not download", "Network is unreachable")
    assert not (tmp_path / "o").exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_download_needs_a_data_set_that_has_one(art, tmp_path, capsys):
    code, _, err = run_cli(capsys, "audit", art, "--download", "--out", tmp_path / "o")
    assert_one_line_error(code, err, "--download needs --data")
    code, _, err = run_cli(capsys, "train", "--data", "imagefolder", "--download", "--out", tmp_path / "o")
    assert_one_line_error(code, err, "cannot be downloaded")
    assert not (tmp_path / "o").exists()


# 9. OSError anywhere becomes the one line; real bugs keep their traceback


def test_os_error_names_its_path(art, capsys):
    (art / "model.json").unlink()
    (art / "model.json").mkdir()
    code, _, err = run_cli(capsys, "eval", art)
    assert_one_line_error(code, err, str(art / "model.json"), "Is a directory")


def test_os_errors_of_any_command(capsys, monkeypatch):
    def refused(args):
        raise PermissionError(13, "Permission denied", "/data/x.bin")

    monkeypatch.setitem(app.COMMANDS, "bench", refused)
    code, _, err = run_cli(capsys, "bench", "r.toml")
    assert_one_line_error(code, err, "/data/x.bin: Permission denied")


def test_a_bug_is_not_hidden(capsys, monkeypatch):
    def buggy(args):
        raise TypeError("unsupported operand")

    monkeypatch.setitem(app.COMMANDS, "bench", buggy)
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["bench", "r.toml"])


# 10. progress without a terminal


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_progress_lines_without_a_terminal(monkeypatch):
    monkeypatch.setattr(progress, "quiet_by_default", lambda: False)  # not quiet although under pytest
    monkeypatch.setattr(progress, "PLAIN_MIN_GAP_S", 0.0)
    stream = io.StringIO()
    with progress.progress_bar(True, stream=stream) as bar:
        assert isinstance(bar, progress.PlainProgress)
        task = bar.add_task("NAD student", total=6, info="")
        for epoch in (1, 2, 3):
            bar.advance(task)
            bar.advance(task)
            bar.update(task, info=f"epoch {epoch}/3 loss 0.412")
    lines = stream.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        f"NAD student: epoch {e}/3 loss 0.412" for e in (1, 2, 3)
    ]
    assert lines[-1].endswith("(6/6, 0 s)")
    assert not isinstance(progress.progress_bar(True, stream=FakeTTY()), progress.PlainProgress)
    quiet = io.StringIO()
    with progress.progress_bar(False, stream=quiet) as bar:
        bar.update(bar.add_task("x", total=1, info="epoch 1/1"), advance=1)
    assert quiet.getvalue() == ""


def test_training_loop_reports_each_epoch_on_a_pipe(monkeypatch, capsys):
    from mendnet.data.imageset import ImageSet
    from mendnet.train import TrainConfig, fit

    monkeypatch.setattr(progress, "quiet_by_default", lambda: False)
    monkeypatch.setattr(progress, "PLAIN_MIN_GAP_S", 0.0)
    torch.manual_seed(0)
    data = ImageSet(
        torch.randint(0, 256, (32, 1, 28, 28), dtype=torch.uint8),
        torch.arange(32) % 10,
        tuple(map(str, range(10))),
        (0.5,),
        (0.5,),
    )
    model = build_classifier(ModelSpec("small-cnn", 10, (1, 28, 28), (0.5,), (0.5,)))
    fit(model, data, TrainConfig(epochs=2, batch_size=16), description="tiny", progress=True)
    err = capsys.readouterr().err  # captured stderr is not a terminal
    assert "tiny: epoch 1/2 loss" in err and "tiny: epoch 2/2 loss" in err
    monkeypatch.setenv("MENDNET_QUIET", "1")
    monkeypatch.setattr(progress, "quiet_by_default", lambda: True)
    fit(model, data, TrainConfig(epochs=1, batch_size=16), description="tiny", progress=True)
    assert capsys.readouterr().err == ""


# 11. readable metavars of the generated flags


def test_help_metavars_are_readable(capsys):
    for argv in (["train"], ["repair", "nad"], ["detect"], ["locate"], ["robustify", "trades"]):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        text = capsys.readouterr().out
        assert "CFG_" not in text and "ATK_" not in text, argv
    with pytest.raises(SystemExit):
        main(["repair", "nad", "--help"])
    text = capsys.readouterr().out
    assert "--epochs N" in text and "--lr X" in text and "--betas [X ...]" in text
    assert "--operator NAME" in text and "--download" not in text
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--download" in capsys.readouterr().out
