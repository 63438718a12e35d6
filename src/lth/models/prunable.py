"""Which weights of a model can be pruned, and of which kind each is."""

from __future__ import annotations

from torch import nn


def prunable_layers(model: nn.Module) -> dict[str, str]:
    """Weight-parameter name → layer kind, in the model's parameter order.

    Registered models declare this themselves (`model.prunable()`). For any other module (a
    user's own), every `nn.Conv*d` weight is `"conv"`, every `nn.Linear` weight is `"fc"`, and
    the last `nn.Linear` is `"output"`, which is how the paper treats its networks.
    """
    declared = getattr(model, "prunable", None)
    if callable(declared):
        return dict(declared())
    kinds: dict[str, str] = {}
    last_linear = None
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            kinds[f"{name}.weight"] = "conv"
        elif isinstance(module, nn.Linear):
            kinds[f"{name}.weight"] = "fc"
            last_linear = f"{name}.weight"
    if last_linear is not None:
        kinds[last_linear] = "output"
    return kinds
