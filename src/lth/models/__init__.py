"""Architectures from a registry, with their prunable layers and seeded initialisation."""

from lth.models import conv, lenet, resnet, vgg  # noqa: F401  (each registers its models)
from lth.models.init import initialize
from lth.models.prunable import prunable_layers
from lth.models.registry import build, check_options, names, register

__all__ = ["build", "check_options", "initialize", "names", "prunable_layers", "register"]
