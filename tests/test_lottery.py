"""Lottery experiments on a tiny problem: what each level starts from, what the controls are,
how the strategies find masks, and that stored work is never done twice or damaged."""

import contextlib
import dataclasses

import pandas as pd
import pytest
import torch
from torch import nn

import lth
from lth.config import Config
from lth.errors import StoreError
from lth.lottery import Experiment, Runtime
from lth.models import build, initialize
from lth.pruning import PruningPlan
from lth.store import RunStore
from tests.helpers import tiny_config, tiny_splits

DATA = tiny_splits()


def _config(*overrides: str) -> Config:
    return tiny_config(*overrides)


def _make_model():
    return build("lenet300", DATA.input_shape, DATA.num_classes, hidden=(32, 16))


def _run(tmp_path, *overrides: str):
    config = _config(*overrides)
    store = RunStore(tmp_path, config)
    rows = Experiment(config, DATA, _make_model, store, Runtime(progress=False)).run()
    return config, store, pd.DataFrame(rows)


def _masked_equal(state, mask, reference):
    for name, value in state.items():
        expected = reference[name] * mask[name] if name in mask else reference[name]
        if not torch.equal(value, expected):
            return False
    return True


def test_reset_strategy_levels_start_from_the_mask_applied_to_theta0(tmp_path):
    config, store, summary = _run(tmp_path)
    theta0 = initialize(_make_model(), config.lottery.seed).state_dict()
    assert _masked_equal(
        store.level(0, "imp", 0).load_tensors("init"), store.level(0, "imp", 0).load_mask(), theta0
    )
    previous = store.level(0, "imp", 0).load_mask()
    for level in range(1, 4):
        imp = store.level(0, "imp", level)
        mask = imp.load_mask()
        assert _masked_equal(imp.load_tensors("init"), mask, theta0)
        # the mask is the previous ticket's trained weights pruned by magnitude
        plan = PruningPlan.for_model(_make_model(), config.pruning)
        expected = plan.prune(previous, store.level(0, "imp", level - 1).load_tensors("final"))
        assert all(torch.equal(mask[n], expected[n]) for n in mask)
        # nested: nothing pruned comes back
        assert all(torch.all(mask[n] <= previous[n]) for n in mask)
        previous = mask
    assert summary.groupby("variant").size().to_dict() == {"imp": 4, "reinit": 4, "random": 4}
    assert list(summary.columns[:5]) == ["trial", "seed", "variant", "level", "percent_remaining"]
    pm = summary[summary.variant == "imp"].percent_remaining.tolist()
    assert pm[0] == 100 and pm == sorted(pm, reverse=True)


def test_controls_reinit_keeps_the_mask_and_random_keeps_the_counts(tmp_path):
    config, store, _ = _run(tmp_path)
    theta0 = initialize(_make_model(), config.lottery.seed).state_dict()
    for level in range(1, 4):
        mask = store.level(0, "imp", level).load_mask()
        reinit, random = store.level(0, "reinit", level), store.level(0, "random", level)
        assert all(torch.equal(reinit.load_mask()[n], mask[n]) for n in mask)
        reinit_init = reinit.load_tensors("init")
        assert not torch.equal(
            reinit_init["hidden.0.weight"], theta0["hidden.0.weight"] * mask["hidden.0.weight"]
        )
        assert _masked_equal(reinit_init, mask, reinit_init)  # masked, with a fresh init
        random_mask = random.load_mask()
        assert random_mask.remaining() == mask.remaining()
        assert not torch.equal(random_mask["hidden.0.weight"], mask["hidden.0.weight"])
        assert _masked_equal(random.load_tensors("init"), random_mask, theta0)


def test_rewinding_starts_each_level_from_theta_k(tmp_path):
    _, store, _summary = _run(tmp_path, "lottery.rewind_step='15it'")
    dense = store.level(0, "imp", 0)
    theta_k = dense.load_tensors("rewind")
    assert not torch.equal(theta_k["hidden.0.weight"], dense.load_tensors("init")["hidden.0.weight"])
    for level in (1, 2, 3):
        imp = store.level(0, "imp", level)
        assert _masked_equal(imp.load_tensors("init"), imp.load_mask(), theta_k)
        assert imp.load_result()["start_iteration"] == 15
        history = pd.read_csv(imp.path / "history.csv")
        assert history.iteration.iloc[0] == 15 and history.iteration.iloc[-1] == 40
    assert store.level(0, "reinit", 1).load_result()["start_iteration"] == 0


def test_continue_strategy_finds_masks_on_the_continued_path_but_reports_tickets(tmp_path):
    config, store, _summary = _run(tmp_path, "lottery.strategy='continue'")
    theta0 = initialize(_make_model(), config.lottery.seed).state_dict()
    plan = PruningPlan.for_model(_make_model(), config.pruning)
    for level in (1, 2, 3):
        imp = store.level(0, "imp", level)
        assert _masked_equal(imp.load_tensors("init"), imp.load_mask(), theta0)
    # path level 1 continues from the dense network's final weights, masked
    path1 = store.level(0, "path", 1)
    dense_final = store.level(0, "imp", 0).load_tensors("final")
    assert _masked_equal(path1.load_tensors("init"), path1.load_mask(), dense_final)
    # level 2's mask comes from the path, not from the level-1 ticket
    expected = plan.prune(path1.load_mask(), path1.load_tensors("final"))
    mask2 = store.level(0, "imp", 2).load_mask()
    assert all(torch.equal(mask2[n], expected[n]) for n in mask2)
    assert not store.level(0, "path", 3).done  # the last level's path is never needed


def test_oneshot_prunes_every_level_from_the_dense_network(tmp_path):
    config, store, _ = _run(tmp_path, "lottery.schedule='oneshot'")
    plan = PruningPlan.for_model(_make_model(), config.pruning)
    dense = store.level(0, "imp", 0)
    for level in (1, 2, 3):
        expected = plan.prune(dense.load_mask(), dense.load_tensors("final"), rounds=level)
        mask = store.level(0, "imp", level).load_mask()
        assert all(torch.equal(mask[n], expected[n]) for n in mask)


def test_trials_have_distinct_recorded_seeds_and_weights(tmp_path):
    _, store, summary = _run(tmp_path, "lottery.trials=2", "lottery.levels=1", "lottery.seed=7")
    assert sorted(summary.seed.unique()) == [7, 8]
    a, b = (store.level(t, "imp", 0).load_tensors("init")["output.weight"] for t in (0, 1))
    assert not torch.equal(a, b)


def test_finished_work_is_never_redone(tmp_path, monkeypatch):
    _, _store, first = _run(tmp_path)
    import lth.lottery.runner as runner

    def no_training(*args, **kwargs):
        raise AssertionError("a finished level was trained again")

    monkeypatch.setattr(runner, "train", no_training)
    monkeypatch.setattr(runner, "train_replicas", no_training)
    _, _, second = _run(tmp_path)
    pd.testing.assert_frame_equal(first, second)


def test_more_levels_extend_the_same_run(tmp_path):
    _, store, short = _run(tmp_path, "lottery.levels=1")
    _, store_long, long = _run(tmp_path, "lottery.levels=2")
    assert store.path == store_long.path
    pd.testing.assert_frame_equal(
        short[short.level <= 1].reset_index(drop=True), long[long.level <= 1].reset_index(drop=True)
    )


def test_a_damaged_stored_file_is_named_with_the_fix(tmp_path):
    _, store, _ = _run(tmp_path, "lottery.levels=1")
    final = store.level(0, "imp", 1).path / "final.safetensors"
    final.write_bytes(b"not a safetensors file")
    with pytest.raises(StoreError, match=r"run file .*final.safetensors is damaged .*delete .*level_01"):
        _run(tmp_path, "lottery.levels=2")
    assert (store.level(0, "imp", 0).path / "result.json").exists()  # nothing else was touched


def test_a_run_directory_of_another_config_is_refused(tmp_path):
    config = _config()
    store = RunStore(tmp_path, config)
    other = dataclasses.replace(config, training=dataclasses.replace(config.training, lr=0.5))
    (store.path / "config.toml").write_text(other.to_toml())
    with pytest.raises(StoreError, match="holds results of a different config"):
        RunStore(tmp_path, config)


def test_an_unwritable_output_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot write the run directory .*--out"):
        RunStore(blocker / "runs", _config())


def test_find_tickets_on_a_users_own_module_and_tensors(tmp_path):
    class Mine(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.ReLU())
            self.head = nn.Linear(24, 4)

        def forward(self, x):
            return self.head(self.body(x))

    config = _config("lottery.levels=2", "pruning.rates={fc = 0.5, output = 0.2}", "data.val_size=200")
    train = (torch.cat([DATA.train.x, DATA.val.x]), torch.cat([DATA.train.y, DATA.val.y]))
    summary = lth.find_tickets(
        Mine(),
        train=train,
        test=(DATA.test.x, DATA.test.y),
        config=config,
        out=tmp_path,
        progress=False,
        device="cpu",
    )
    imp = summary[summary.variant == "imp"]
    assert imp.level.tolist() == [0, 1, 2]
    assert imp.percent_remaining.iloc[2] < 40
    assert imp.final_test_accuracy.iloc[0] > 0.5  # the toy problem is learnable
    assert "module_Mine" in summary.attrs["run_dir"]


@pytest.mark.parametrize(
    ("replicas", "stops"),
    [
        ("1", (1, 3, 4, 6)),  # one model at a time: inside level-1 imp, random, level-2 imp, random
        ("3", (2, 3)),  # as replicas: inside level 1's group (ticket and controls), level 2's
    ],
)
def test_an_interrupted_run_finishes_with_the_summary_of_an_unbroken_one(
    tmp_path, monkeypatch, replicas, stops
):
    """Stop the process (in-process here; test_cli kills a real one) inside each training in
    turn, run again, and compare every number with a run that was never stopped."""
    settings = ("lottery.levels=2", f"lottery.replicas={replicas}")
    _, _, reference = _run(tmp_path / "clean", *settings)
    import lth.lottery.runner as runner

    real = {"train": runner.train, "train_replicas": runner.train_replicas}

    class Stop(Exception):
        pass

    for stop_at in stops:
        calls = [0]

        def stopping(real_train, calls=calls, stop_at=stop_at):
            def run(*args, **kwargs):
                calls[0] += 1
                if calls[0] == stop_at:  # stop after the first evaluation, checkpoint written
                    kwargs["on_progress"] = lambda n: (_ for _ in ()).throw(Stop())
                return real_train(*args, **kwargs)

            return run

        for name, function in real.items():
            monkeypatch.setattr(runner, name, stopping(function))
        config = _config(*settings)
        store = RunStore(tmp_path / "stopped", config)
        runtime = Runtime(progress=False, checkpoint_interval_s=0.0)
        with contextlib.suppress(Stop):
            Experiment(config, DATA, _make_model, store, runtime).run()
    for name, function in real.items():
        monkeypatch.setattr(runner, name, function)
    _, _, resumed = _run(tmp_path / "stopped", *settings)
    pd.testing.assert_frame_equal(resumed, reference)


def test_a_group_stopped_while_writing_its_results_writes_the_rest_without_training(tmp_path, monkeypatch):
    settings = ("lottery.levels=1", "lottery.replicas=3")
    _, _, reference = _run(tmp_path / "clean", *settings)
    import lth.lottery.runner as runner
    from lth.store import LevelDir

    real_save = LevelDir.save_result
    saved = []

    class Stop(Exception):
        pass

    def stop_after_one_of_the_group(self, result):
        if result["level"] == 1 and saved:
            raise Stop
        real_save(self, result)
        saved.extend([result["variant"]] if result["level"] == 1 else [])

    monkeypatch.setattr(LevelDir, "save_result", stop_after_one_of_the_group)
    with pytest.raises(Stop):
        _run(tmp_path / "stopped", *settings)
    assert saved == ["imp"]
    monkeypatch.setattr(LevelDir, "save_result", real_save)

    def no_training(*args, **kwargs):
        raise AssertionError("the group's outcomes were saved: nothing needs training again")

    monkeypatch.setattr(runner, "train_replicas", no_training)
    _, store, resumed = _run(tmp_path / "stopped", *settings)
    pd.testing.assert_frame_equal(resumed, reference)
    assert not list((store.path / "replicas").rglob("*.pt"))  # the group's checkpoint is gone
