"""The table of variants: one registration makes a variant that trains, is stored and summarised,
is counted by the sweep status and appears in the report, with no other edit."""

import dataclasses

import pandas as pd
import pytest
import torch

from lth.config import Config
from lth.errors import ConfigError, LthError
from lth.lottery import Experiment, Runtime, variants
from lth.models import build
from lth.report import build_report
from lth.store import RunStore
from lth.sweep.progress import trainings_by_level, unit_state
from lth.sweep.spec import Run, Unit
from lth.training import train
from tests.helpers import tiny_config, tiny_splits

DATA = tiny_splits()


@pytest.fixture
def flipped():
    """A throwaway control: the level's mask on -θk, trained from iteration k."""
    variant = variants.register(
        variants.Variant(
            name="flipped",
            description="the level's mask on -θk, trained from iteration k",
            legend="signs flipped",
            weights=lambda ctx: {k: -v for k, v in ctx.theta_k().items()},
            mask=variants.level_mask,
            from_rewind=True,
            salt="flipped",
        )
    )
    yield variant
    variants.unregister(variant.name)


def _make_model():
    return build("lenet300", DATA.input_shape, DATA.num_classes, hidden=(32, 16))


def test_a_registered_variant_trains_is_summarised_counted_and_reported(tmp_path, flipped):
    config = tiny_config("lottery.levels=2", "lottery.variants=['imp', 'flipped']")
    store = RunStore(tmp_path / "runs", config)
    Experiment(config, DATA, _make_model, store, Runtime(progress=False)).run()

    summary = pd.read_csv(store.path / "summary.csv")
    assert sorted(summary[summary.variant == "flipped"].level) == [0, 1, 2]  # level 0: the shared dense
    ticket_init = store.level(0, "imp", 2).load_tensors("init")
    flipped_init = store.level(0, "flipped", 2).load_tensors("init")
    for name, value in ticket_init.items():
        assert torch.equal(flipped_init[name], -value), name

    assert trainings_by_level(config)[1] == [("imp", 1), ("flipped", 1)]
    state = unit_state(Unit(Run(config, store.path), 0))
    assert state.done and state.trainings == 5  # dense, then the ticket and flipped at two levels

    report = build_report([store.path], tmp_path / "report")
    assert set(report.aggregate.variant) == {"imp", "flipped"}
    assert "IMP minus flipped" in report.text()
    assert "flipped (signs flipped)" in (tmp_path / "report" / "early_stop_accuracy.svg").read_text()


def test_a_variant_not_in_the_table_is_refused_in_one_line():
    choices = "imp, reinit, random, invert"
    with pytest.raises(ConfigError, match=rf"variants must be among {choices}; got 'flipped'"):
        tiny_config("lottery.variants=['imp', 'flipped']")
    with pytest.raises(ConfigError, match="must include 'imp'"):
        tiny_config("lottery.variants=['reinit']")
    with pytest.raises(ConfigError, match="got 'path'"):  # internal: trained when the strategy needs it
        tiny_config("lottery.variants=['imp', 'path']")


def test_the_table_gives_what_each_level_trains_and_where_the_next_mask_comes_from():
    reset = Config()
    assert [v.name for v in variants.trained_at(reset, 1)] == ["imp", "reinit", "random"]
    assert variants.mask_source(reset, 3) == "imp"
    continued = tiny_config("lottery.strategy='continue'")  # 3 levels
    assert [v.name for v in variants.trained_at(continued, 1)] == ["imp", "path", "reinit", "random"]
    assert [v.name for v in variants.trained_at(continued, 3)] == ["imp", "reinit", "random"]
    assert [variants.mask_source(continued, level) for level in (0, 1, 2)] == ["imp", "path", "path"]
    assert variants.controls() == ["reinit", "random", "invert"]
    assert variants.reported() == ["imp", "reinit", "random", "invert"]
    # What the next level waits for: the chain, never a control.
    assert variants.read_by_next(reset, 0) == variants.read_by_next(reset, 2) == ["imp"]
    assert variants.read_by_next(continued, 1) == ["imp", "path"]
    assert variants.read_by_next(continued, 3) == ["imp"]  # the last level: its path is not trained


def test_a_variant_that_reads_a_control_s_training_is_refused_with_the_rule(tmp_path):
    """The next level does not wait for the controls (a sweep may train it beside them), so a
    variant's rules may not start from a control's trained weights."""
    variant = variants.register(
        variants.Variant(
            name="leech",
            description="the level's mask on the reinit control's trained weights",
            legend="leech",
            weights=lambda ctx: ctx.trained("reinit"),
            mask=variants.level_mask,
            from_rewind=False,
            salt="leech",
        )
    )
    try:
        config = tiny_config("lottery.levels=2", "lottery.variants=['imp', 'reinit', 'leech']")
        store = RunStore(tmp_path, config)
        refused = "'leech' reads the trained weights of 'reinit' at level 1, but a level may read only imp"
        with pytest.raises(LthError, match=refused):
            Experiment(config, DATA, _make_model, store, Runtime(progress=False)).run()
    finally:
        variants.unregister(variant.name)


def _retrain_run(tmp_path, *overrides: str):
    config = tiny_config("lottery.levels=2", "lottery.variants=['imp', 'random']", *overrides)
    store = RunStore(tmp_path, config)
    Experiment(config, DATA, _make_model, store, Runtime(progress=False)).run()
    return config, store


def _masked(weights, mask):
    return {k: v * mask[k] if k in mask else v for k, v in weights.items()}


@pytest.mark.parametrize("retrain", ["lr", "finetune"])
def test_learning_rate_rewinding_and_fine_tuning_keep_the_trained_survivors(tmp_path, retrain):
    _, store = _retrain_run(tmp_path, f"lottery.retrain='{retrain}'", "lottery.rewind_step='10it'")
    for level in (1, 2):
        ticket = store.level(0, "imp", level)
        before = store.level(0, "imp", level - 1).load_tensors("final")
        expected = _masked(before, ticket.load_mask())
        for name, value in ticket.load_tensors("init").items():
            assert torch.equal(value, expected[name]), (level, name)
        assert ticket.load_result()["start_iteration"] == 10  # T - k iterations
        # The random control starts from the same trained weights, under its own random mask.
        random = store.level(0, "random", level)
        started = _masked(before, random.load_mask())
        assert torch.equal(random.load_tensors("init")["hidden.0.weight"], started["hidden.0.weight"])


def test_fine_tuning_trains_at_the_schedules_final_rate(tmp_path):
    schedule = ["training.optimizer='sgd'", "training.lr=0.1", "training.lr_milestones=['20it']"]
    config, store = _retrain_run(tmp_path, "lottery.retrain='finetune'", *schedule)
    ticket = store.level(0, "imp", 1)
    model = _make_model()
    model.load_state_dict(ticket.load_tensors("init"))
    at_final_rate = dataclasses.replace(config.training, lr=0.1 * 0.1, lr_milestones=[])
    train(model, DATA, at_final_rate, seed=config.lottery.seed, mask=ticket.load_mask())
    for name, value in ticket.load_tensors("final").items():
        assert torch.equal(model.state_dict()[name], value), name


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["lottery.retrain='sideways'"], "retrain must be one of weights, lr, finetune; got 'sideways'"),
        (["lottery.retrain='lr'", "lottery.strategy='continue'"], "is its own iterative loop"),
        (["lottery.retrain='finetune'", "lottery.schedule='oneshot'"], "is its own iterative loop"),
    ],
)
def test_a_retraining_rule_that_cannot_work_is_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(*overrides)
