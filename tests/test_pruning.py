"""Pruning rules: exact counts, lowest magnitude first, biases never pruned, masks round-trip."""

import pytest
import torch

from lth.config import PruningConfig
from lth.errors import ConfigError
from lth.models import build, initialize
from lth.pruning import Mask, PruningPlan, prune_global, prune_layerwise, random_like


def _lenet():
    return initialize(build("lenet300", (1, 28, 28), 10), seed=0)


def test_layerwise_round_removes_rate_of_remaining_weights_per_layer():
    model = _lenet()
    plan = PruningPlan.for_model(model, PruningConfig(rates={"fc": 0.2, "output": 0.1}))
    mask = plan.dense_mask(model)
    weights = dict(model.named_parameters())
    for _ in range(4):
        before = mask.remaining()
        mask = plan.prune(mask, weights)
        after = mask.remaining()
        for name, n in before.items():
            rate = 0.1 if name == "output.weight" else 0.2
            assert before[name] - after[name] == int(rate * n + 0.5)


def test_lenet_percent_remaining_compounds_as_in_the_paper():
    model = _lenet()
    plan = PruningPlan.for_model(model, PruningConfig())
    mask, weights = plan.dense_mask(model), dict(model.named_parameters())
    pm = {}
    for level in range(1, 17):
        mask = plan.prune(mask, weights)
        pm[level] = round(100 * mask.fraction_remaining(), 1)
    # The paper: 51.3% at round 3, 21.1% at 7, 13.5% at 9, 3.6% at 15, 2.9% at 16
    assert (pm[3], pm[7], pm[9], pm[15], pm[16]) == (51.3, 21.1, 13.5, 3.6, 2.9)


def test_pm_over_all_weights_counts_resnets_unpruned_output_and_shortcuts_as_remaining():
    model = initialize(build("resnet20", (3, 32, 32), 10), seed=0)
    plan = PruningPlan.for_model(model, PruningConfig(method="global", rates={"conv": 0.2}))
    mask, weights = plan.dense_mask(model), dict(model.named_parameters())
    shapes = {name: t.shape for name, t in model.state_dict().items()}  # batch norm's too: not weights
    assert mask.fraction_remaining_all(shapes) == 1.0
    for _ in range(10):
        mask = plan.prune(mask, weights)
    convs = sum(mask.remaining().values())
    # 3×3 convs pruned; the output (640) and the 1×1 shortcuts (2,560) whole; 270,896 weights in all
    assert mask.fraction_remaining_all(shapes) == (convs + 640 + 2560) / 270_896
    # the paper's 11.8% is round 10, whose Pm over the pruned convs is 10.7%
    assert (
        round(100 * mask.fraction_remaining(), 1),
        round(100 * mask.fraction_remaining_all(shapes), 1),
    ) == (
        10.7,
        11.8,
    )


def test_the_lowest_magnitudes_go_first_whatever_their_sign():
    w = torch.tensor([[-5.0, 0.1, 3.0, -0.2, 1.0, -0.05, 4.0, -2.0, 0.3, 6.0]])
    mask = Mask({"w": torch.ones_like(w)})
    pruned = prune_layerwise(mask, {"w": w}, {"w": 0.3})
    assert pruned["w"].tolist() == [[1, 0, 1, 0, 1, 0, 1, 1, 1, 1]]  # 0.1, -0.2, -0.05 go
    # a second round prunes among survivors only: 30% of 7 → 2 more (0.3 and 1.0)
    again = prune_layerwise(pruned, {"w": w}, {"w": 0.3})
    assert again["w"].tolist() == [[1, 0, 1, 0, 0, 0, 1, 1, 0, 1]]


def test_already_pruned_weights_stay_pruned_even_if_large():
    w = torch.tensor([10.0, 0.1, 0.2, 0.3])
    mask = Mask({"w": torch.tensor([0.0, 1.0, 1.0, 1.0])})
    pruned = prune_layerwise(mask, {"w": w}, {"w": 0.34})
    assert pruned["w"].tolist() == [0, 0, 1, 1]


def test_global_pruning_uses_one_threshold_across_layers_and_spares_others():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    b = torch.tensor([0.5, 0.6, 10.0, 11.0])
    mask = Mask({"a": torch.ones(4), "b": torch.ones(4)})
    pruned = prune_global(mask, {"a": a, "b": b}, rate=0.5, layers=["a", "b"])
    assert pruned["a"].tolist() == [0, 0, 1, 1]
    assert pruned["b"].tolist() == [0, 0, 1, 1]
    only_a = prune_global(mask, {"a": a, "b": b}, rate=0.5, layers=["a"])
    assert only_a["b"].tolist() == [1, 1, 1, 1]
    assert only_a["a"].tolist() == [0, 0, 1, 1]


def test_global_plan_prunes_only_the_kinds_named():
    model = _lenet()
    plan = PruningPlan.for_model(model, PruningConfig(method="global", rates={"fc": 0.2}))
    mask = plan.prune(plan.dense_mask(model), dict(model.named_parameters()))
    assert "output.weight" not in mask
    total = sum(mask.sizes().values())
    assert total - sum(mask.remaining().values()) == int(0.2 * total + 0.5)


def test_random_mask_keeps_each_layers_count_and_is_seeded():
    model = _lenet()
    plan = PruningPlan.for_model(model, PruningConfig())
    mask = plan.prune(plan.dense_mask(model), dict(model.named_parameters()), rounds=5)
    r1 = random_like(mask, torch.Generator().manual_seed(1))
    r2 = random_like(mask, torch.Generator().manual_seed(1))
    r3 = random_like(mask, torch.Generator().manual_seed(2))
    assert r1.remaining() == mask.remaining()
    assert all(torch.equal(r1[n], r2[n]) for n in mask)
    assert not torch.equal(r1["hidden.0.weight"], r3["hidden.0.weight"])
    assert not torch.equal(r1["hidden.0.weight"], mask["hidden.0.weight"])


def test_oneshot_goes_straight_to_the_compound_fraction():
    model = _lenet()
    plan = PruningPlan.for_model(model, PruningConfig())
    weights = dict(model.named_parameters())
    oneshot = plan.prune(plan.dense_mask(model), weights, rounds=3)
    # 1 - 0.8^3 = 48.8% of 235,200 pruned at once
    assert oneshot.remaining()["hidden.0.weight"] == 235_200 - int((1 - 0.8**3) * 235_200 + 0.5)


def test_biases_are_never_in_a_mask():
    plan = PruningPlan.for_model(_lenet(), PruningConfig())
    assert all(name.endswith("weight") for name in plan.layer_rates)
    assert set(plan.layer_rates) == {"hidden.0.weight", "hidden.1.weight", "output.weight"}


def test_a_rate_for_a_kind_the_model_lacks_is_a_clear_error():
    with pytest.raises(ConfigError, match="'conv'.*prunable kinds are fc, output"):
        PruningPlan.for_model(_lenet(), PruningConfig(rates={"conv": 0.1}))


def test_mask_saves_and_loads_exactly(tmp_path):
    model = _lenet()
    plan = PruningPlan.for_model(model, PruningConfig())
    mask = plan.prune(plan.dense_mask(model), dict(model.named_parameters()), rounds=2)
    mask.save(tmp_path / "mask.safetensors")
    loaded = Mask.load(tmp_path / "mask.safetensors")
    assert loaded.remaining() == mask.remaining()
    assert all(torch.equal(loaded[n], mask[n]) for n in mask)
    assert loaded.layer_fractions()["output.weight"] == pytest.approx(0.81)


def test_a_reloaded_mask_gives_the_same_random_control():
    """safetensors does not keep the order of layers; a resumed run must draw the same mask."""
    model = _lenet()
    plan = PruningPlan.for_model(model, PruningConfig())
    mask = plan.prune(plan.dense_mask(model), dict(model.named_parameters()))
    reloaded = Mask.from_bytes(mask.to_bytes())
    a = random_like(mask, torch.Generator().manual_seed(5))
    b = random_like(reloaded, torch.Generator().manual_seed(5))
    assert all(torch.equal(a[n], b[n]) for n in mask)
