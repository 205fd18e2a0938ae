"""Attention maps of the same (triggered) test images under several models (`mendnet attention`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mendnet.artefact import Artefact
from mendnet.data.imageset import ImageSet
from mendnet.data.ref import data_of
from mendnet.report.attention_grid import attention_grid_png
from mendnet.threats.backdoor.spec import backdoor_test_for, threat_of


def triggered_test_images(meta: dict[str, Any], test: ImageSet, n: int) -> torch.Tensor:
    """The first `n` test images as floats in [0, 1]: the backdoor test images (non-target ones, for
    all-to-one) with the recorded trigger applied, or plain test images when `meta` records none."""
    backdoor = backdoor_test_for(threat_of(meta), test)
    if backdoor is None:
        return test.float_images(torch.arange(n))
    return backdoor.trigger.apply(backdoor.data.float_images(torch.arange(n)))


def attention_png(arts: Sequence[Artefact], images: int = 4) -> bytes:
    """PNG of per-stage attention maps of the first `images` test images of the first artefact's data
    set, triggered by its recorded backdoor (if any), under each artefact's model (titled by folder)."""
    test = data_of(arts[0].meta).split("test")
    x = triggered_test_images(arts[0].meta, test, max(1, min(images, len(test))))
    return attention_grid_png({str(m.path.name if m.path else i): m.model for i, m in enumerate(arts)}, x)
