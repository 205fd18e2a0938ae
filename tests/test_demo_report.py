"""The demo's report names what mend kept when the demo ran mend, and says nothing of mend otherwise."""

from __future__ import annotations

from mendnet.demo import DemoConfig, report_markdown

ROWS = {
    "backdoored": {"acc": 0.91, "asr": 1.0, "ra": 0.0},
    "finetune": {"acc": 0.86, "asr": 0.9, "ra": 0.1, "der": 0.52},
    "nad": {"acc": 0.89, "asr": 0.05, "ra": 0.8, "der": 0.96},
}


def test_demo_report_names_what_mend_kept():
    mended = {**ROWS, "mend": {"acc": 0.90, "asr": 0.02, "ra": 0.85, "der": 0.98, "chosen": "fst"}}
    text = report_markdown(DemoConfig(), mended, 600.0)
    assert text.startswith("# mendnet demo: BadNets → fine-tuning and NAD → mend")
    assert "kept **fst**" in text and "mend/report.md" in text
    assert "| mend | 90.00 |" in text
    plain = report_markdown(DemoConfig(mend=False), ROWS, 500.0)
    body = plain.split("Settings:")[0]
    assert "mend" not in body.replace("mendnet", "")
