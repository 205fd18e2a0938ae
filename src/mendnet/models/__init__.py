"""Architectures, the normalising classifier wrapper, stages and feature taps."""

from mendnet.models.classifier import Classifier, ModelSpec, build_classifier, check_fits
from mendnet.models.registry import ARCHITECTURES, ArchSpec, architecture_names, get_architecture
from mendnet.models.stages import check_attention_stages, discover_stages, stage_shapes
from mendnet.models.taps import FeatureTap
from mendnet.models.user_model import load_factory

__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "Classifier",
    "FeatureTap",
    "ModelSpec",
    "architecture_names",
    "build_classifier",
    "check_attention_stages",
    "check_fits",
    "discover_stages",
    "get_architecture",
    "load_factory",
    "stage_shapes",
]
