"""Artefact folders: round trip, atomic writes, --force, and refusal of pickled, corrupt or NaN files."""

import json
import pickle

import pytest
import torch

from mendnet.artefact import FORMAT, atomic_output_dir, load_artefact, read_weights, save_artefact
from mendnet.errors import MendnetError
from mendnet.models import ModelSpec, build_classifier

SPEC = ModelSpec("small-cnn", 10, (1, 28, 28), (0.286,), (0.353,))


def model():
    torch.manual_seed(0)
    return build_classifier(SPEC)


def test_round_trip(tmp_path):
    m = model()
    out = save_artefact(tmp_path / "a", m, {"data": {"name": "fashion-mnist"}}, {"acc": 0.5})
    art = load_artefact(out)
    x = torch.rand(3, 1, 28, 28)
    loaded, saved = art.model.state_dict(), m.state_dict()
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved)
    # the loaded model is channels_last (faster convolutions), so outputs agree to float rounding
    assert torch.allclose(art.model(x), m.eval()(x), atol=1e-6)
    assert art.metrics == {"acc": 0.5}
    meta = json.loads((out / "model.json").read_text())
    assert meta["format"] == FORMAT and meta["model"]["arch"] == "small-cnn"
    assert art.model.spec == SPEC


def test_existing_output_needs_force_and_failed_write_leaves_nothing(tmp_path):
    out = save_artefact(tmp_path / "a", model(), {}, {})
    with pytest.raises(MendnetError, match="--force"):
        save_artefact(out, model(), {}, {})
    with pytest.raises(RuntimeError), atomic_output_dir(tmp_path / "b") as tmp:
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    save_artefact(out, model(), {}, {"acc": 1.0}, force=True)
    assert load_artefact(out).metrics == {"acc": 1.0}


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_weights_are_refused(tmp_path, capsys):
    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(MendnetError, match=r"evil\.pt"):
        read_weights(bad)
    assert "pwned" not in capsys.readouterr().out


def test_plain_pt_state_dict_loads(tmp_path):
    m = model()
    path = tmp_path / "w.pt"
    torch.save(m.net.state_dict(), path)
    assert set(read_weights(path)) == set(m.net.state_dict())


def test_corrupt_nan_and_mismatched_weights(tmp_path):
    out = save_artefact(tmp_path / "a", model(), {}, {})
    weights = out / "model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[: len(original) // 2])
    with pytest.raises(MendnetError, match=r"model\.safetensors"):
        load_artefact(out)
    bad = model()
    with torch.no_grad():
        next(bad.parameters())[0] = float("nan")
    nan_out = save_artefact(tmp_path / "nan", bad, {}, {})
    with pytest.raises(MendnetError, match="NaN"):
        load_artefact(nan_out)
    meta = json.loads((out / "model.json").read_text())
    meta["model"]["num_classes"] = 7
    weights.write_bytes(original)
    (out / "model.json").write_text(json.dumps(meta))
    with pytest.raises(MendnetError, match="do not fit"):
        load_artefact(out)
    (out / "model.json").write_text("{not json")
    with pytest.raises(MendnetError, match="not valid JSON"):
        load_artefact(out)
    with pytest.raises(MendnetError, match="does not exist"):
        load_artefact(tmp_path / "nothing")
