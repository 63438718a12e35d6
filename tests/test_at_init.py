"""Pruning at initialization: SNIP, GraSP and SynFlow against scores computed another way, the
`init` schedule (every mask from θ0), the `invert` and `shuffle` ablations, and the errors.
(Exact counts and determinism for every criterion: tests/test_criteria.py.)"""

from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lth.config import PruningConfig
from lth.errors import ConfigError
from lth.lottery import Experiment, Runtime
from lth.models import build, initialize
from lth.pruning import Mask, PruningPlan, ScoreContext, criteria
from lth.pruning.criteria import grasp
from lth.report import at_init as report_at_init
from lth.report.build import build_report
from lth.store import RunStore
from tests.helpers import tiny_config, tiny_run, tiny_splits

DATA = tiny_splits()


def _data(n: int = 30, features: int = 5, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` examples, the same number of each class (so GraSP's class-balanced pick takes them all)."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, features, generator=g), torch.arange(n) % classes


def _context(model: nn.Module, data=None, step=None) -> ScoreContext:
    x, y = data if data is not None else _data()
    weights = dict(model.named_parameters())
    mask = Mask({n: torch.ones_like(p) for n, p in weights.items() if p.dim() >= 2})
    return ScoreContext(model=model, mask=mask, weights=weights, batches=lambda n: (x, y), seed=0, step=step)


def _mlp(bias: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(5, 6, bias=bias),
        nn.ReLU(),
        nn.Linear(6, 4, bias=bias),
        nn.ReLU(),
        nn.Linear(4, 3, bias=bias),
    )


def test_snip_is_the_weight_times_the_hand_written_softmax_regression_gradient():
    model = nn.Sequential(nn.Linear(5, 3))
    x, y = _data()
    w, b = model[0].weight.detach(), model[0].bias.detach()
    # Cross-entropy of softmax(xWᵀ + b): ∂L/∂W = (p − onehot(y))ᵀ x / n.
    grad = (torch.softmax(x @ w.T + b, dim=1) - F.one_hot(y, 3).float()).T @ x / len(x)
    scores = criteria.get("snip").score(_context(model))
    torch.testing.assert_close(scores["0.weight"], (w * grad).abs())
    assert torch.equal(model[0].weight.detach(), w), "scoring changed the model"


def test_grasp_is_theta_times_the_explicit_hessian_gradient_product():
    model = _mlp()
    x, y = _data()
    names = [n for n, p in model.named_parameters() if p.dim() >= 2]
    shapes = [dict(model.named_parameters())[n].shape for n in names]
    flat0 = torch.cat([dict(model.named_parameters())[n].detach().flatten() for n in names])

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params = dict(model.named_parameters())
        parts = dict(zip(names, flat.split([s.numel() for s in shapes]), strict=True))
        tensors = {
            n: parts[n].view(s) if n in parts else params[n] for n, s in zip(names, shapes, strict=True)
        }
        tensors |= {n: p for n, p in params.items() if n not in parts}
        out = torch.func.functional_call(model.eval(), tensors, (x,))
        return F.cross_entropy(out / grasp.TEMPERATURE, y)

    g = torch.autograd.functional.jacobian(loss, flat0)
    hessian = torch.autograd.functional.hessian(loss, flat0)
    expected = (flat0 * (hessian @ g)).split([s.numel() for s in shapes])
    scores = criteria.get("grasp").score(_context(model))
    for name, shape, want in zip(names, shapes, expected, strict=True):
        torch.testing.assert_close(scores[name], want.view(shape), rtol=1e-4, atol=1e-9)


def test_grasp_takes_ten_examples_of_each_class_from_the_seeded_draw():
    x = torch.randn(200, 5)
    y = torch.tensor([0] * 150 + [1] * 40 + [2] * 10)[
        torch.randperm(200, generator=torch.Generator().manual_seed(0))
    ]
    drawn = []

    def batches(n: int):
        drawn.append(n)
        return x[: 30 * n], y[: 30 * n]

    ctx = ScoreContext(model=None, mask=Mask({}), weights={}, batches=batches, seed=0)
    _, picked = grasp.balanced(ctx, 10, 3)
    assert torch.bincount(picked, minlength=3).tolist() == [10, 10, 10]
    assert drawn[-1] * 30 >= 200 and drawn == sorted(drawn)  # drew more until the rare class had 10


def test_synflow_conserves_the_flow_in_every_layer_of_a_biasless_network():
    """Tanaka et al.'s conservation law: with |θ| weights, an all-ones input and no biases, each
    layer's scores sum to R, the summed output, in every round."""
    model = _mlp(bias=False)
    with torch.no_grad():
        r = nn.Sequential(*[m for m in model]).double()
        for p in r.parameters():
            p.abs_()
        flow = float(r(torch.ones(1, 5, dtype=torch.float64)).sum())
    keep_all = lambda mask, scores, t: mask  # noqa: E731 (a step that prunes nothing: one round's scores)
    scores = criteria.get("synflow").score(_context(_mlp(bias=False), step=keep_all))
    for name, s in scores.items():
        assert float(s.double().sum()) == pytest.approx(flow, rel=1e-5), name


def test_synflow_ranks_what_its_rounds_prune_below_what_survives_and_earlier_lower():
    model = initialize(build("lenet300", (1, 8, 8), 4, hidden=(32, 16)), seed=0)
    weights = model.state_dict()
    plan = PruningPlan.for_model(
        model, PruningConfig(method="global", rates={"fc": 0.5, "output": 0.5}, criterion="synflow")
    )
    mask = plan.dense_mask(model)
    context = ScoreContext(
        model=model,
        mask=mask,
        weights=weights,
        batches=lambda n: (DATA.train.x[:30], DATA.train.y[:30]),
        seed=0,
    )
    scores = plan.score(mask, weights, 1, context)
    pruned = plan.prune(mask, weights, 1, context)
    for name in mask:
        kept, dropped = scores[name][pruned[name].bool()], scores[name][~pruned[name].bool()]
        assert kept.min() >= 0 > dropped.max()
        assert dropped.min() >= -100 and dropped.max() < 0


def _experiment(tmp_path, *overrides):
    config = tiny_config("pruning.method='global'", "pruning.rates={fc = 0.3, output = 0.3}", *overrides)
    store = RunStore(tmp_path, config)
    make = lambda: build("lenet300", DATA.input_shape, DATA.num_classes, hidden=(32, 16))  # noqa: E731
    return config, store, Experiment(config, DATA, make, store, Runtime(progress=False)), make


def test_the_init_schedule_prunes_every_level_from_theta0_before_training(tmp_path):
    config, store, experiment, make = _experiment(
        tmp_path, "lottery.schedule='init'", "lottery.variants=['imp']"
    )
    experiment.run()
    theta0 = initialize(make(), config.lottery.seed).state_dict()
    plan = PruningPlan.for_model(make(), config.pruning)
    dense = plan.dense_mask(make())
    for level in range(1, config.lottery.levels + 1):
        stored = store.level(0, "imp", level).load_mask()
        expected = plan.prune(dense, theta0, rounds=level)
        assert all(torch.equal(stored[n], expected[n]) for n in dense), level
        # Trained from θ0 under that mask, like a ticket.
        init = store.level(0, "imp", level).load_tensors("init")
        assert all(torch.equal(init[n], theta0[n] * stored[n]) for n in stored)


@pytest.mark.parametrize("schedule", ["init", "iterative"])
def test_invert_keeps_the_lowest_scored_at_the_tickets_per_layer_counts(tmp_path, schedule):
    config, store, experiment, _ = _experiment(
        tmp_path, f"lottery.schedule='{schedule}'", "lottery.variants=['imp', 'invert']"
    )
    experiment.run()
    for level in range(1, config.lottery.levels + 1):
        ticket = store.level(0, "imp", level).load_mask()
        inverted = store.level(0, "invert", level).load_mask()
        assert inverted.remaining() == ticket.remaining()
        # What the level's mask was chosen from: the level before's trained ticket, or θ0.
        before = store.level(0, "imp", level - 1 if schedule == "iterative" else 0)
        candidates = (
            before.load_mask()
            if schedule == "iterative"
            else Mask({n: torch.ones_like(m) for n, m in ticket.items()})
        )
        scored = before.load_tensors("final" if schedule == "iterative" else "init")
        for name in ticket:
            magnitude = scored[name].abs()
            inside = candidates[name].bool()
            kept, left = magnitude[inverted[name].bool()], magnitude[inside & ~inverted[name].bool()]
            assert bool((inverted[name] <= candidates[name]).all())
            if len(left) and len(kept):
                assert kept.max() <= left.min()


def test_shuffle_is_read_as_the_random_variant(tmp_path):
    config, store, experiment, _ = _experiment(
        tmp_path, "lottery.variants=['imp', 'shuffle']", "lottery.levels=1"
    )
    assert config.lottery.variants == ["imp", "random"]
    experiment.run()
    ticket, shuffled = store.level(0, "imp", 1).load_mask(), store.level(0, "random", 1).load_mask()
    assert shuffled.remaining() == ticket.remaining() and any(
        not torch.equal(ticket[n], shuffled[n]) for n in ticket
    )


@pytest.mark.parametrize("name", ["snip", "grasp", "synflow"])
def test_a_criterion_that_scores_the_network_refuses_to_run_without_it(name):
    model = _mlp()
    plan = PruningPlan({"0.weight": 0.5}, "layerwise", name)
    weights = dict(model.named_parameters())
    with pytest.raises(
        ConfigError, match=f"^pruning.criterion '{name}' scores the network on training batches"
    ):
        plan.prune(Mask({"0.weight": torch.ones(6, 5)}), weights)


def test_a_scope_the_model_cannot_serve_and_a_from_dense_continue_are_one_line_errors():
    with pytest.raises(
        ConfigError, match="^pruning.rates names layer kind 'conv', which this model does not have"
    ):
        PruningPlan.for_model(
            build("lenet300", (1, 8, 8), 4), PruningConfig(method="global", rates={"conv": 0.2})
        )
    with pytest.raises(ConfigError, match="^lottery.schedule 'init' prunes once from the dense network"):
        tiny_config("lottery.schedule='init'", "lottery.strategy='continue'")


# --- the report ----------------------------------------------------------------------------------


def _table(method_gaps: dict[str, dict[str, float]]) -> pd.DataFrame:
    """An aggregate with each method's ticket at 90% at levels 1..4 (Pm 50, 25, 12.5, 6.25) and
    each ablation that many points below it."""
    rows = []
    for method, ablations in method_gaps.items():
        for variant, gap in {"imp": 0.0, **ablations}.items():
            for level in range(5):
                acc = 0.90 - gap / 100 - (0.02 * level if method != "IMP" else 0.0)
                stats = {f"early_stop_test_accuracy_{s}": acc for s in ("mean", "min", "max")}
                rows.append(
                    {
                        "run": method,
                        "variant": variant,
                        "level": level,
                        "percent_remaining_mean": 100 / 2**level,
                    }
                    | stats
                )
    return pd.DataFrame(rows)


def _reports(methods):
    def config(method):
        schedule, criterion = ("iterative", "magnitude") if method == "IMP" else ("init", method)
        return SimpleNamespace(
            lottery=SimpleNamespace(schedule=schedule), pruning=SimpleNamespace(criterion=criterion)
        )

    return [SimpleNamespace(run=SimpleNamespace(label=m, config=config(m))) for m in methods]


@pytest.mark.parametrize(
    ("imp_gap", "snip_gap", "verdicts"),
    [(5.0, 0.0, ("holds", "holds")), (0.0, 5.0, ("does not hold", "does not hold"))],
)
def test_the_papers_ablation_claims_are_judged_on_the_mean_gap(imp_gap, snip_gap, verdicts):
    gaps = {"IMP": {"random": imp_gap, "reinit": imp_gap}, "snip": {"random": snip_gap, "reinit": snip_gap}}
    at_init = report_at_init.find(_reports(gaps), _table(gaps))
    assert at_init is not None and at_init.imp == "IMP" and at_init.criteria == {"snip": "snip"}
    by_text = {c.text.split(" ")[0] + c.text.split(" ")[1]: c for c in at_init.checks}
    assert (by_text["Shufflingan"].verdict, by_text["ShufflingIMP's"].verdict) == verdicts
    # SNIP's ticket falls 2 points a level below IMP's: at Pm ≤ 10% (level 4) it is 8 below.
    below = by_text["Pruningat"]
    assert below.verdict == "holds" and "IMP − snip +8.00" in below.ours


def test_no_at_init_run_means_no_section():
    assert report_at_init.find(_reports(["IMP"]), _table({"IMP": {}})) is None


def test_a_report_of_imp_and_an_at_init_run_draws_the_section_and_its_figures(tmp_path):
    overrides = (
        "pruning.method='global'",
        "pruning.rates={fc = 0.5, output = 0.5}",
        "lottery.variants=['imp', 'shuffle', 'reinit', 'invert']",
    )
    imp = tiny_run(tmp_path / "runs", tiny_config(*overrides, "lottery.levels=2"), DATA)
    snip = tiny_run(
        tmp_path / "runs",
        tiny_config(*overrides, "lottery.schedule='init'", "pruning.criterion='snip'", "lottery.levels=2"),
        DATA,
    )
    report = build_report([imp, snip], tmp_path / "report")
    assert report.at_init is not None and report.at_init.criteria == {"snip": report.runs[1].run.label}
    names = {f.name for f in report.figures}
    assert {"at_init_accuracy", "at_init_ablations", "at_init_layers"} <= names
    page = (tmp_path / "report" / "report.md").read_text()
    assert "## Pruning at initialization" in page and "Pruning at initialization falls below IMP" in page
