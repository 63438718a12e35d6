"""Pruning as criterion × scope: every criterion prunes exact counts of survivors under both
scopes, magnitude gives the masks it gave before the split, and a new criterion is one file."""

import hashlib
import itertools

import pytest
import torch
import torch.nn.functional as F

from lth.config import Config, PruningConfig, with_overrides
from lth.errors import ConfigError
from lth.lottery import Experiment, Runtime
from lth.models import build, initialize
from lth.pruning import Mask, PruningPlan, ScoreContext, criteria, prune_global, prune_layerwise
from lth.pruning.scopes import SCOPES
from lth.store import RunStore
from tests.helpers import tiny_config, tiny_splits

RATES = {"layerwise": {"fc": 0.2, "output": 0.1}, "global": {"fc": 0.2, "output": 0.2}}


def _lenet():
    return initialize(build("lenet300", (1, 28, 28), 10), seed=0)


def _context(model, mask, weights, seed=0) -> ScoreContext:
    """A context with everything a criterion may ask for, the batches drawn from `seed`."""

    def batches(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return torch.rand(8 * n, 1, 28, 28, generator=g), torch.randint(0, 10, (8 * n,), generator=g)

    return ScoreContext(model=model, mask=mask, weights=weights, batches=batches, seed=seed)


def _same(a: Mask, b: Mask) -> bool:
    return list(a) == list(b) and all(torch.equal(a[name], b[name]) for name in a)


@pytest.mark.parametrize("method", sorted(SCOPES))
@pytest.mark.parametrize("name", criteria.names())
def test_every_criterion_prunes_exact_counts_of_survivors_only_and_deterministically(name, method):
    model = _lenet()
    weights = dict(model.named_parameters())
    plan = PruningPlan.for_model(model, PruningConfig(method=method, rates=RATES[method], criterion=name))

    def three_rounds() -> list[Mask]:
        masks = [plan.dense_mask(model)]
        for level in range(3):
            mask = masks[-1]
            masks.append(plan.prune(mask, weights, context=_context(model, mask, weights, seed=level)))
        return masks

    masks = three_rounds()
    for before, after in itertools.pairwise(masks):
        assert all(bool((after[n] <= before[n]).all()) for n in before), "a pruned weight came back"
        removed = {n: before.remaining()[n] - after.remaining()[n] for n in before}
        if method == "layerwise":
            assert removed == {n: int(plan.layer_rates[n] * k + 0.5) for n, k in before.remaining().items()}
        else:
            rate = RATES[method]["fc"]
            assert sum(removed.values()) == int(rate * sum(before.remaining().values()) + 0.5)
    assert all(_same(a, b) for a, b in zip(masks, three_rounds(), strict=True))


def _tied_case(seed: int) -> tuple[Mask, dict[str, torch.Tensor]]:
    """Weights of 13 values (ties in |w| everywhere, of equal and opposite signs) and a mask with
    a quarter already pruned, large weights among them."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"b.weight": (12, 30), "a.weight": (30, 20), "c.weight": (5, 12)}
    weights = {n: torch.randint(-6, 7, s, generator=g).float() / 4 for n, s in shapes.items()}
    mask = Mask({n: (torch.rand(s, generator=g) >= 0.25).float() for n, s in shapes.items()})
    return mask, weights


def _digest(masks: list[Mask]) -> str:
    h = hashlib.sha256()
    for mask in masks:
        for name in mask:
            h.update(name.encode())
            h.update(mask[name].to(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


# Digests of the masks that PruningPlan.prune gave on these cases before pruning was split into
# criterion × scope (commit 3b06b50, where magnitude was built into prune_layerwise/prune_global).
# The global pool runs b, a, c (the order of the rates, not the mask's sorted order): tie order.
BEFORE_THE_SPLIT = {
    ("layerwise", (("b.weight", 0.2), ("a.weight", 0.35), ("c.weight", 0.1))): "065017141efa7f1c",
    ("global", (("b.weight", 0.3), ("a.weight", 0.3), ("c.weight", 0.3))): "5a97554f8610728f",
}


@pytest.mark.parametrize(("method", "rates"), sorted(BEFORE_THE_SPLIT))
def test_magnitude_through_the_plan_gives_the_masks_it_gave_before_the_split(method, rates):
    plan = PruningPlan(dict(rates), method)
    masks = []
    for seed in range(3):
        mask, weights = _tied_case(seed)
        masks.append(plan.prune(mask, weights, rounds=3))
        for _ in range(3):
            previous, mask = mask, plan.prune(mask, weights)
            by_weights = (
                prune_layerwise(previous, weights, dict(rates))
                if method == "layerwise"
                else prune_global(previous, weights, rates[0][1], [n for n, _ in rates])
            )
            assert _same(mask, by_weights)
            masks.append(mask)
    assert _digest(masks) == BEFORE_THE_SPLIT[(method, rates)]


def test_a_new_criterion_is_one_registration_and_prunes_through_the_plan():
    @criteria.register("negative-magnitude", "-|w|: the largest weights go first (a test's)")
    def score(ctx: ScoreContext) -> dict[str, torch.Tensor]:
        return {n: -ctx.weights[n].detach().abs() for n in ctx.mask}

    try:
        config = with_overrides(Config(), ["pruning.criterion='negative-magnitude'"])
        w = torch.tensor([[-5.0, 0.1, 3.0, -0.2, 1.0, -0.05, 4.0, -2.0, 0.3, 6.0]])
        plan = PruningPlan({"w": 0.3}, config.pruning.method, config.pruning.criterion)
        pruned = plan.prune(Mask({"w": torch.ones_like(w)}), {"w": w})
        assert pruned["w"].tolist() == [[0, 1, 1, 1, 1, 1, 0, 1, 1, 0]]  # -5, 4 and 6 go
        # the pruned weights now score highest (0 is the largest -|w|), yet stay pruned
        w_after = w * pruned["w"]
        again = plan.prune(pruned, {"w": w_after})
        assert again["w"].tolist() == [[0, 1, 0, 1, 1, 1, 0, 0, 1, 0]]  # 30% of 7 → 2 more: 3 and -2
    finally:
        criteria.unregister("negative-magnitude")
    assert "negative-magnitude" not in criteria.names()


def test_an_unknown_criterion_is_one_line_naming_the_choices():
    choices = ", ".join(criteria.names())
    message = rf"unknown pruning criterion 'snipp': choose one of {choices} \(see `lth criteria`\)"
    with pytest.raises(ConfigError, match=f"^pruning.criterion: {message}$"):
        with_overrides(Config(), ["pruning.criterion=snipp"])
    with pytest.raises(ConfigError, match=f"^{message}$"):
        PruningPlan.for_model(_lenet(), PruningConfig(criterion="snipp"))


def test_a_criterion_that_needs_data_asks_for_batches_in_one_line():
    drawn = []

    @criteria.register("loss-free", "scores from a batch (a test's)", needs_data=True)
    def score(ctx: ScoreContext) -> dict[str, torch.Tensor]:
        drawn.append(ctx.batches(2)[0].shape[0])
        return {n: ctx.weights[n].detach().abs() for n in ctx.mask}

    try:
        model = _lenet()
        weights = dict(model.named_parameters())
        plan = PruningPlan.for_model(model, PruningConfig(criterion="loss-free"))
        mask = plan.dense_mask(model)
        full = _context(model, mask, weights)
        no_model = ScoreContext(model=None, mask=mask, weights=weights, batches=full.batches, seed=0)
        for context in (None, no_model):
            with pytest.raises(
                ConfigError, match="^pruning.criterion 'loss-free' .* with the model and batches"
            ):
                plan.prune(mask, weights, context=context)
        with_data = plan.prune(mask, weights, context=full)
        by_magnitude = PruningPlan.for_model(model, PruningConfig()).prune(mask, weights)
        assert drawn == [16] and _same(with_data, by_magnitude)
    finally:
        criteria.unregister("loss-free")


def test_a_context_on_other_weights_is_refused():
    model = _lenet()
    plan = PruningPlan.for_model(model, PruningConfig())
    mask, weights = plan.dense_mask(model), dict(model.named_parameters())
    with pytest.raises(ValueError, match="context must be built on the mask and weights"):
        plan.prune(mask, weights, context=_context(model, mask, dict(weights)))


@pytest.mark.parametrize("method", sorted(SCOPES))
def test_a_scope_leaves_layers_without_a_rate_alone(method):
    mask = Mask({"a": torch.ones(4), "b": torch.tensor([1.0, 0.0, 1.0, 1.0])})
    scores = {"a": torch.tensor([4.0, 3.0, 2.0, 1.0]), "b": torch.tensor([-9.0, -9.0, -9.0, -9.0])}
    pruned = SCOPES[method](mask, scores, {"a": 0.5})
    assert pruned["a"].tolist() == [1, 1, 0, 0]
    assert torch.equal(pruned["b"], mask["b"])


def test_scores_of_another_shape_are_refused():
    mask = Mask({"a": torch.ones(2, 3)})
    for scope in SCOPES.values():
        with pytest.raises(
            ValueError, match=r"scored layer 'a' with shape \(6,\), but the layer has shape \(2, 3\)"
        ):
            scope(mask, {"a": torch.ones(6)}, {"a": 0.5})


def test_random_scores_follow_the_seed():
    model = _lenet()
    plan = PruningPlan.for_model(model, PruningConfig(criterion="random"))
    mask, weights = plan.dense_mask(model), dict(model.named_parameters())
    one, again, other = (
        plan.prune(mask, weights, context=_context(model, mask, weights, s)) for s in (1, 1, 2)
    )
    assert _same(one, again) and not _same(one, other)
    assert one.remaining() == other.remaining()


def test_the_hash_covers_the_criterion_only_when_it_is_not_magnitude():
    base = Config()
    assert with_overrides(base, ["pruning.criterion=magnitude"]).hash() == base.hash()
    assert with_overrides(base, ["pruning.criterion=random"]).hash() != base.hash()


def test_a_criterion_that_needs_data_gets_the_network_and_seeded_batches_from_a_lottery_run(tmp_path):
    """Registered once, a data-dependent criterion (here |w ⊙ ∂L/∂w|, SNIP's score) prunes every
    level of a run: the runner hands it the network at the weights it scores and seeded batches."""
    data, seen = tiny_splits(), []

    @criteria.register("throwaway-saliency", "|w * dL/dw| on two batches", needs_data=True)
    def saliency(ctx: ScoreContext) -> dict[str, torch.Tensor]:
        x, y = ctx.batches(2)
        seen.append((len(x), ctx.seed))
        params = dict(ctx.model.named_parameters())
        for name in ctx.mask:  # the network is at the weights being scored, masked
            assert torch.equal(params[name].detach(), ctx.weights[name] * ctx.mask[name])
        ctx.model.zero_grad()
        F.cross_entropy(ctx.model(x), y).backward()
        return {name: (params[name] * params[name].grad).abs().detach() for name in ctx.mask}

    def masks(out):
        config = tiny_config("pruning.criterion='throwaway-saliency'", "lottery.variants=['imp']")
        store = RunStore(out, config)

        def make_model():
            return build("lenet300", data.input_shape, data.num_classes, hidden=(32, 16))

        Experiment(config, data, make_model, store, Runtime(progress=False)).run()
        return [store.level(0, "imp", level).load_mask() for level in (1, 2, 3)]

    try:
        first, again = masks(tmp_path / "a"), masks(tmp_path / "b")
    finally:
        criteria.unregister("throwaway-saliency")
    assert [n for n, _ in seen] == [60] * 6  # two batches of 30, at each of 3 levels, in each run
    assert len({s for _, s in seen}) == 3  # a seed per level, the same in both runs
    for a, b in zip(first, again, strict=True):
        assert all(torch.equal(a[name], b[name]) for name in a)  # seeded batches: the same masks
    assert first[2].fraction_remaining() < first[0].fraction_remaining() < 1
