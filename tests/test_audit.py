"""`mendnet audit` on the session's backdoored model and its NAD repair, and its HTML in a real browser."""

from __future__ import annotations

import io
import json
import shutil
import statistics

import pytest
import torch
from PIL import Image

from mendnet.audit import AuditConfig, audit_model
from mendnet.cli import main
from mendnet.detect.neural_cleanse import Config
from mendnet.errors import MendnetError
from mendnet.jobs.load import load_model
from mendnet.report.html import Figure, Section, Table, html_page
from tests.conftest import SHORT_DETECTION

# Neural Cleanse as the session's `detection` (SHORT_DETECTION: 10 epochs of 10 batches of 12; it singles
# out the backdoor's target); the attacks on 100 test images with 10 steps, the budgeted AutoAttack on 5.
FAST = AuditConfig(
    test_images=100, nc_epochs=10, nc_batches=10, nc_batch_size=12, attack_steps=10, aa_images=5
)


@pytest.fixture(scope="module")
def backdoored_audit(backdoored, detection, fmnist):
    """The audit of `backdoored`. Its Neural Cleanse run is the session's `detection` (tests/conftest.py):
    the audit's call is checked to ask for exactly that seeded run (the same model, settings, defender
    data and seed) and answered with it rather than repeated."""
    import mendnet.audit.run as audit_run

    def same_run(art, config, **kw):
        assert art is backdoored and config == Config(**SHORT_DETECTION), config
        assert (kw["clean_fraction"], kw["seed"], kw["sets"][0]) == (0.05, 0, fmnist[0]), kw
        return detection

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(audit_run, "detect_artefact", same_run)
        return audit_model(backdoored, FAST, sets=fmnist, progress=False, model_ref="runs/bd")


@pytest.fixture(scope="module")
def repaired_audit(backdoored, nad_repaired, fmnist):
    from mendnet.artefact import Artefact

    art = Artefact(nad_repaired.model, nad_repaired.meta, nad_repaired.metrics, None)
    return audit_model(art, FAST, sets=fmnist, progress=False)


def test_audit_points_at_the_backdoor_target(backdoored_audit):
    """The audit's smallest and most anomalous reversed trigger is the target's, and its attention and
    advice follow. Whether Neural Cleanse flags it at this shortened reversal depends on the host
    (tests/test_neural_cleanse.py: index near 2), so the advice is checked for the detection's answer."""
    report = backdoored_audit.report
    det = report["detection"]
    norms = [row["norm"] for row in det["labels"]]
    index = [row["anomaly_index"] or 0.0 for row in det["labels"]]
    below = [i for i, n in zip(index, norms, strict=True) if n < statistics.median(norms)]
    assert norms[0] == min(norms) and index[0] == max(below), det["labels"]
    assert report["clean"]["asr"] > 0.9 and report["clean"]["n"] == 100
    assert report["attention"]["label"] == 0 and report["attention"]["flagged"] == bool(det["flagged"])
    # the reversed trigger of label 0 is a working backdoor trigger on defender images of other classes
    assert report["attention"]["sent_to_label"] > 0.9
    # 10 epochs end before any label can early-stop (25 stale epochs)
    assert det["labels_at_limit"] == 10
    if det["flagged"]:
        assert det["flagged"][:1] == [0], det["labels"]
        assert any("`mendnet repair nad --model runs/bd`" in line for line in report["advice"])
        assert any("`mendnet detect runs/bd` (60 epochs)" in line for line in report["advice"])
    else:
        assert any(
            line.startswith("No label flagged: the smallest working reversed trigger (label 0)")
            for line in report["advice"]
        )


def test_audit_of_the_nad_repaired_model_flags_nothing(repaired_audit, backdoored_audit):
    report = repaired_audit.report
    assert report["detection"]["flagged"] == [], report["detection"]["labels"]
    assert report["clean"]["asr"] < 0.2
    assert not any("repair nad" in line for line in report["advice"])
    assert any(line.startswith("No label flagged") for line in report["advice"])
    before = backdoored_audit.report["detection"]["labels"][0]
    assert report["detection"]["labels"][0]["norm"] > before["norm"]  # label 0's trigger grew back


def test_robust_accuracy_is_measured_under_the_standard_attacks(backdoored_audit):
    robust = backdoored_audit.report["robust"]
    assert list(robust["per_attack"]) == ["FGSM", "PGD-L∞ (10 steps)", "CW-L∞ (10 steps)"]
    assert robust["eps"] == pytest.approx(0.1)  # 28×28 greyscale default
    assert robust["worst_case"] <= min(robust["per_attack"].values()) <= robust["clean_acc"]
    assert robust["per_attack"]["PGD-L∞ (10 steps)"] < robust["clean_acc"]  # the attacks do bite
    aa = robust["autoattack"]
    assert aa["images"] == 5 and aa["components"] == ["apgd-ce", "apgd-t", "square"]
    assert (
        aa["targets"] == 3 and aa["square_queries"] == 1000 and aa["label"].startswith("AutoAttack, budgeted")
    )
    assert sum(aa["broken_by"].values()) <= 5 and 0 <= aa["robust_acc"] <= 1


def test_audit_files(backdoored_audit):
    files = backdoored_audit.files
    assert {"report.html", "report.md", "audit.json", "attention.png", "reversed_trigger.png"} <= set(files)
    assert json.loads(files["audit.json"])["detection"] == json.loads(
        json.dumps(backdoored_audit.report["detection"])
    )
    md = files["report.md"]
    assert "![" in md and "(attention.png)" in md and "| label | class |" in md
    html = files["report.html"]
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert html.count('src="data:image/png;base64,') == 2


def test_load_model_forms(backdoored, tmp_path):
    from mendnet.artefact import save_artefact
    from mendnet.data.ref import DataRef

    save_artefact(tmp_path / "art", backdoored.model, backdoored.meta, backdoored.metrics)
    weights = tmp_path / "art" / "model.safetensors"
    ref = DataRef("fashion-mnist")
    from_weights = load_model(str(weights), "wrn-16-1", ref)
    x = torch.rand(4, 1, 28, 28)
    with torch.inference_mode():  # equal up to float rounding (the artefact is loaded channels_last)
        assert torch.allclose(from_weights.model(x), backdoored.model.cpu().eval()(x), atol=1e-5)
    factory = tmp_path / "user_net.py"
    factory.write_text(
        "from safetensors.torch import load_file\n"
        "from mendnet.models.registry import get_architecture\n"
        "def make(num_classes):\n"
        "    build = get_architecture('wrn-16-1').factory\n"
        "    net = build(num_classes=num_classes, in_channels=1, input_size=(28, 28))\n"
        f"    net.load_state_dict(load_file({str(weights)!r}))\n"
        "    return net\n"
    )
    from_factory = load_model(f"{factory}:make", None, ref)
    with torch.inference_mode():
        assert torch.allclose(from_factory.model(x), backdoored.model(x), atol=1e-5)
    assert load_model(str(weights)).path == tmp_path / "art"  # a file of an artefact, without --arch
    bare = tmp_path / "net.safetensors"
    bare.write_bytes(weights.read_bytes())
    with pytest.raises(MendnetError, match="needs --arch and --data"):
        load_model(str(bare), None, ref)
    with pytest.raises(MendnetError, match="needs --data"):
        load_model(f"{factory}:make", None, None)
    with pytest.raises(MendnetError, match="not an artefact folder"):
        load_model(str(tmp_path / "nothing"), None, ref)


def test_a_missing_weights_file_is_named_missing_before_any_other_complaint(tmp_path):
    with pytest.raises(MendnetError, match=r"weights file .*nothing\.safetensors is missing"):
        load_model(str(tmp_path / "nothing.safetensors"), None, None)


def test_audit_command_on_a_weights_file(backdoored, tmp_path, capsys):
    """The command end to end with tiny settings (checks the files and the saved model, not detection)."""
    from safetensors.torch import save_file

    weights = tmp_path / "net.safetensors"
    save_file({k: v.contiguous() for k, v in backdoored.model.net.state_dict().items()}, str(weights))
    out = tmp_path / "audit"
    args = ["audit", str(weights), "--arch", "wrn-16-1", "--data", "fashion-mnist", "--out", str(out)]
    tiny = ["--test-images", "20", "--nc-epochs", "1", "--nc-batches", "2", "--nc-batch-size", "8"]
    tiny += ["--aa-images", "4"]
    assert main([*args, *tiny, "--attack-steps", "2", "--quiet"]) == 0
    assert f"audit → {out}/report.html" in capsys.readouterr().out
    assert {"report.html", "report.md", "audit.json", "model"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "model" / "model.json").read_text())["model"]["arch"] == "wrn-16-1"
    assert main([*args, *tiny, "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["audit", str(weights), "--data", "fashion-mnist", "--out", str(tmp_path / "x")]) == 2
    assert "needs --arch" in capsys.readouterr().err and not (tmp_path / "x").exists()
    bad = [*args[:-1], str(tmp_path / "y"), "--nc-epochs", "0"]
    assert main(bad) == 2
    assert "epochs must be ≥ 1" in capsys.readouterr().err and not (tmp_path / "y").exists()


# ---- the HTML report in a real browser (headless Chromium through Selenium and chromedriver) -----------
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium; missing is a failure (`make test` installs it)."""
    missing = [n for n, path in (("chromium", CHROMIUM), ("chromium-driver", CHROMEDRIVER)) if path is None]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (dev extras)")
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed (`make test` installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,2400"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def render(driver, html: str, tmp_path) -> dict:
    """Open a page from a file: its tables, images (decoded sizes), console errors and a screenshot."""
    page = tmp_path / "page.html"
    page.write_text(html)
    driver.get(page.as_uri())
    return {
        "tables": driver.execute_script("return document.querySelectorAll('table').length"),
        "rows": driver.execute_script("return document.querySelectorAll('tbody tr').length"),
        "images": driver.execute_script("return Array.from(document.images, i => i.naturalWidth)"),
        "errors": [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")],
        "screenshot": driver.get_screenshot_as_png(),
    }


def test_the_browser_check_catches_a_broken_page(browser, tmp_path):
    broken = html_page("broken", [Section("s", [Figure(b"not a png", "x.png", "broken image")])])
    broken = broken.replace("</body>", '<script>throw new Error("boom")</script></body>')
    seen = render(browser, broken, tmp_path)
    assert seen["images"] == [0]  # the browser could not decode it
    assert any("boom" in e for e in seen["errors"])


def test_report_html_renders_in_chromium(browser, backdoored_audit, tmp_path):
    seen = render(browser, backdoored_audit.files["report.html"], tmp_path)
    assert seen["errors"] == []
    assert seen["tables"] == 3  # accuracy, detection, robustness
    assert seen["rows"] >= 2 + 10 + 5
    assert len(seen["images"]) == 2 and all(w > 100 for w in seen["images"])
    shot = Image.open(io.BytesIO(seen["screenshot"])).convert("L")
    (tmp_path / "screenshot.png").write_bytes(seen["screenshot"])
    low, high = shot.getextrema()
    assert shot.size[0] >= 1000 and high - low > 200  # something is drawn, not a blank page


def test_html_escapes_text():
    page = html_page("a <b>", [Section("s & t", ["`<x>` & y", Table(["h"], [["<td>"]])])])
    assert "<code>&lt;x&gt;</code> &amp; y" in page and "<td>&lt;td&gt;</td>" in page
    assert "<title>a &lt;b&gt;</title>" in page
