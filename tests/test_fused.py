"""The fused engine: the autograd engine's numbers to the last bit on a CPU, in flat buffers; the
survivors-only optimiser within rounding; checkpoints interchangeable; chosen where it applies."""

import copy

import pandas as pd
import pytest
import torch
from torch import nn

from lth.config import PruningConfig, TrainingConfig
from lth.environment import signature
from lth.errors import ConfigError
from lth.lottery import Experiment, Runtime
from lth.models import build, initialize
from lth.pruning import PruningPlan
from lth.store import RunStore
from lth.training import fused, train
from lth.training.engines import engine_name
from lth.training.fused import FusedMLP, mlp_layers
from lth.training.loop import run
from lth.training.replicas import train_replicas
from tests.helpers import RecordingCheckpoint, tiny_config, tiny_splits

DATA = tiny_splits()


def _lenet(seed: int = 0) -> nn.Module:
    return initialize(build("lenet300", DATA.input_shape, DATA.num_classes, hidden=(32, 16)), seed)


def _mask(model: nn.Module, rounds: int):
    plan = PruningPlan.for_model(model, PruningConfig())
    return plan.prune(plan.dense_mask(model), dict(model.named_parameters()), rounds=rounds)


class Copying(RecordingCheckpoint):
    """Keeps each saved state as it was when saved, as a file would."""

    def save(self, state):
        super().save(copy.deepcopy(state))


def _config(**settings) -> TrainingConfig:
    return TrainingConfig(**({"steps": "60it", "eval_every": "10it", "batch_size": 30} | settings))


def _train_both(config: TrainingConfig, rounds: int, **kwargs):
    """The same training by the autograd and the fused engine: (model, result) of each."""
    trained = {}
    for engine in ("autograd", "fused"):
        model = _lenet()
        mask = _mask(model, rounds) if rounds else None
        trained[engine] = model, train(model, DATA, config, seed=3, mask=mask, engine=engine, **kwargs)
    return trained


@pytest.mark.parametrize(
    ("settings", "rounds", "extra"),
    [
        ({}, 0, {}),  # dense, no mask
        ({"weight_decay": 1e-3}, 3, {"capture_at": 7}),
        ({"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3, "warmup": "20it"}, 5, {}),
        ({"optimizer": "sgd", "lr": 0.1, "momentum": 0.0}, 2, {"start": 10}),
        ({"test_curve": True, "lr_milestones": ["30it"], "lr_gamma": 0.1}, 8, {}),
    ],
)
def test_the_fused_engine_computes_the_autograd_engines_numbers_bit_for_bit(settings, rounds, extra):
    trained = _train_both(_config(**settings), rounds, **extra)
    (model_a, result_a), (model_f, result_f) = trained["autograd"], trained["fused"]
    for (name, a), f in zip(model_a.state_dict().items(), model_f.state_dict().values(), strict=True):
        assert torch.equal(a, f), name
    pd.testing.assert_frame_equal(
        pd.DataFrame(result_f.history), pd.DataFrame(result_a.history), rtol=0, atol=0
    )
    assert result_f.record() == result_a.record()
    if result_a.captured is not None:
        assert all(torch.equal(result_f.captured[n], v) for n, v in result_a.captured.items())


def _state_at_pruned(state: dict, mask, names: list[str]):
    """Every per-weight optimiser state entry at the mask's pruned positions."""
    for name, m in mask.items():
        for key, value in state["optimizer"]["state"][names.index(name)].items():
            if torch.is_tensor(value) and value.shape == m.shape:
                yield (name, key), value[m == 0]


@pytest.mark.parametrize("survivors", [False, True])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_pruned_weights_and_their_optimiser_state_stay_exactly_zero(survivors, optimizer):
    model = _lenet()
    mask = _mask(model, 6)
    with torch.no_grad():  # unmasked start weights: the engine must zero them itself
        model.get_parameter("hidden.0.weight").add_(0.01)
    config = _config(optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 1e-3, momentum=0.9)
    engine = FusedMLP(model, DATA, config, seed=1, mask=mask, augment=False, survivors=survivors)
    spy = RecordingCheckpoint()
    run(engine, DATA, config, seed=1, checkpoint=spy)
    engine.write_back()
    names = list(dict(model.named_parameters()))
    for name, m in mask.items():
        weight = model.get_parameter(name)
        assert torch.all(weight[m == 0] == 0) and torch.any(weight[m == 1] != 0), name
    for saved in spy.saved:
        for where, values in _state_at_pruned(saved["engine"], mask, names):
            assert torch.all(values == 0), where


def test_survivors_only_equals_the_full_update_within_rounding():
    """Stepping only the live entries changes where the optimiser's vectorised kernel rounds, so
    the numbers agree within the replica tests' tolerance rather than bit for bit."""
    config, results = _config(), {}
    for survivors in (False, True):
        model = _lenet()
        engine = FusedMLP(
            model, DATA, config, seed=2, mask=_mask(model, 10), augment=False, survivors=survivors
        )
        results[survivors] = run(engine, DATA, config, seed=2)[0], engine.copy_weights()[0]
    (full, full_w), (live, live_w) = results[False], results[True]
    for name, value in full_w.items():
        torch.testing.assert_close(live_w[name], value, rtol=1e-4, atol=1e-5, msg=name)
    assert live.record() == pytest.approx(full.record(), rel=1e-4, abs=1e-5)


@pytest.mark.parametrize(("first", "second"), [("autograd", "fused"), ("fused", "autograd")])
def test_a_checkpoint_of_one_engine_resumes_under_the_other_to_the_unbroken_numbers(first, second):
    """Both engines checkpoint in one format, so a run stopped under one finishes under the other
    exactly as an unbroken run does."""
    config = _config()
    unbroken_model = _lenet()
    mask = _mask(unbroken_model, 4)
    unbroken = train(unbroken_model, DATA, config, seed=5, mask=mask, engine=first)

    spy = Copying()
    train(_lenet(), DATA, config, seed=5, mask=mask, engine=first, checkpoint=spy)
    state = spy.saved[2]  # stopped after 30 of 60 iterations

    class Resume(RecordingCheckpoint):
        def load(self):
            return state

    resumed_model = _lenet()
    resumed = train(resumed_model, DATA, config, seed=5, mask=mask, engine=second, checkpoint=Resume())
    assert state["iteration"] == 30
    pairs = zip(resumed_model.parameters(), unbroken_model.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert resumed.record() == unbroken.record()


def _mlps() -> dict[str, tuple[nn.Module, bool]]:
    """Networks and whether the fused engine can train them."""
    d = DATA.input_shape
    features = d[0] * d[1] * d[2]
    return {
        "lenet": (_lenet(), True),
        "sequential": (nn.Sequential(nn.Flatten(), nn.Linear(features, 8), nn.ReLU(), nn.Linear(8, 4)), True),
        "conv2": (build("conv2", (3, 32, 32), 10), False),
        "dropout": (
            nn.Sequential(nn.Flatten(), nn.Linear(features, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 4)),
            False,
        ),
        "tanh": (nn.Sequential(nn.Flatten(), nn.Linear(features, 8), nn.Tanh(), nn.Linear(8, 4)), False),
        "no flatten": (nn.Sequential(nn.Linear(features, 8), nn.ReLU(), nn.Linear(8, 4)), True),
        "relu last": (nn.Sequential(nn.Flatten(), nn.Linear(features, 8), nn.ReLU()), False),
    }


@pytest.mark.parametrize("name", list(_mlps()))
def test_the_fused_engine_takes_exactly_the_networks_it_computes(name):
    model, fused = _mlps()[name]
    assert (mlp_layers(model) is not None) == fused
    assert engine_name("auto", model) == ("fused" if fused else "autograd")
    if not fused:
        with pytest.raises(ConfigError, match="cannot train"):
            engine_name("fused", model)


def test_an_unknown_engine_is_refused_before_anything_trains(tmp_path):
    config = tiny_config()
    listed = "auto, fused, sparse, channels-last, autograd"
    with pytest.raises(ConfigError, match=f"unknown engine 'turbo'.*{listed}"):
        Experiment(config, DATA, lambda: _lenet(), RunStore(tmp_path, config), Runtime(engine="turbo"))
    assert not list(tmp_path.rglob("result.json"))


def test_each_result_records_the_engine_that_trained_it(tmp_path):
    config = tiny_config("lottery.levels=1")
    summaries = []
    for engine in ("autograd", "auto"):
        store = RunStore(tmp_path / engine, config)
        Experiment(config, DATA, lambda: _lenet(), store, Runtime(engine=engine)).run()
        trainers = {r["engine"]["trainer"] for r in store.stored_results([0])}
        assert trainers == {"autograd" if engine == "autograd" else "fused"}
        summaries.append(pd.read_csv(store.path / "summary.csv"))
    pd.testing.assert_frame_equal(summaries[0], summaries[1], rtol=0, atol=0)


@pytest.mark.parametrize("sparse", [False, True])
def test_survivors_only_resumes_to_the_unbroken_numbers(sparse, monkeypatch):
    """Its checkpoints hold the full-shape state (zeros at pruned weights), compacted again on
    resuming; with sparse products in every layer, the first layer's lazily kept dense values
    are written before each checkpoint."""
    monkeypatch.setattr(fused, "SPARSE_MIN_WEIGHTS", 0)
    monkeypatch.setattr(fused, "SPARSE_DENSITY", 1.0)
    config = _config()

    def engine(model):
        mask = _mask(model, 7)
        return FusedMLP(model, DATA, config, seed=4, mask=mask, augment=False, survivors=True, sparse=sparse)

    unbroken = engine(_lenet())
    unbroken_result = run(unbroken, DATA, config, seed=4)[0]

    spy = Copying()
    run(engine(_lenet()), DATA, config, seed=4, checkpoint=spy)

    class Resume(RecordingCheckpoint):
        def load(self):
            return spy.saved[3]

    resumed = engine(_lenet())
    resumed_result = run(resumed, DATA, config, seed=4, checkpoint=Resume())[0]
    weights = [e.copy_weights()[0] for e in (resumed, unbroken)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])
    assert resumed_result.record() == unbroken_result.record()


CUDA = pytest.param(
    "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
)


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize(("min_weights", "csr_layers"), [(0, 3), (1000, 1)])
def test_the_sparse_engine_equals_the_fused_one_within_rounding_and_keeps_pruned_weights_zero(
    min_weights, csr_layers, device, monkeypatch
):
    """Sparse products (CSR forward, the weight gradient sampled at the mask) in every layer, or
    in the first only (LeNet's case: dense layers read its transposed output): the thresholds
    that keep LeNet's small layers dense are lowered for this tiny network. On CUDA the CSR
    products are cuSPARSE's, which the step reaches by the same calls."""
    monkeypatch.setattr(fused, "SPARSE_MIN_WEIGHTS", min_weights)
    monkeypatch.setattr(fused, "SPARSE_DENSITY", 1.0)
    config, results = _config(), {}
    data = _on_cuda(DATA) if device == "cuda" else DATA
    for sparse in (False, True):
        model = _lenet().to(device)
        mask = _mask(model, 12).to(device)
        engine = FusedMLP(
            model, data, config, seed=2, mask=mask, augment=False, survivors=sparse, sparse=sparse
        )
        assert len(engine.csr) == (csr_layers if sparse else 0)
        if sparse:  # what the compact gradient held before a step must not reach the first one
            engine.compact_grad.fill_(float("nan"))
        results[sparse] = run(engine, data, config, seed=2)[0], engine.copy_weights()[0]
    (dense, dense_w), (sparse, sparse_w) = results[False], results[True]
    for name, value in dense_w.items():
        torch.testing.assert_close(sparse_w[name], value, rtol=1e-4, atol=1e-5, msg=name)
        if name in mask:
            assert torch.all(sparse_w[name][mask[name] == 0] == 0), name
    assert sparse.record() == pytest.approx(dense.record(), rel=1e-4, abs=1e-5)


def test_sparse_products_are_used_only_where_measured_to_pay():
    big = torch.ones(300, 784)
    big.view(-1)[: int(0.92 * big.numel())] = 0  # 8% dense
    assert fused.sparse_pays(big)
    big.view(-1)[: int(0.7 * big.numel())] = 1  # 30% dense
    assert not fused.sparse_pays(big)
    small = torch.zeros(100, 300)
    small[0, :3] = 1
    assert not fused.sparse_pays(small)


def test_the_sparse_engine_leaves_masks_it_would_not_speed_up_to_the_fused_one(tmp_path, monkeypatch):
    """Levels with no layer sparse enough are computed by the fused engine, its numbers bit for
    bit; from the first level with one, by sparse products. The results' signature is the chosen
    engine's throughout (running that choice again gives these numbers), so no trial "mixes"."""
    monkeypatch.setattr(fused, "SPARSE_MIN_WEIGHTS", 0)
    monkeypatch.setattr(fused, "SPARSE_DENSITY", 0.7)  # level 1's hidden layers: 80% left; level 2: 64%
    config = tiny_config("lottery.levels=2")
    results = {}
    for choice in ("fused", "sparse"):
        store = RunStore(tmp_path / choice, config)
        Experiment(config, DATA, lambda: _lenet(), store, Runtime(engine=choice, progress=False)).run()
        results[choice] = {(r["variant"], r["level"]): r for r in store.stored_results([0])}
        weights = {key: store.level(0, *key).load_tensors("final") for key in results[choice]}
        results[choice] = results[choice], weights
    (fused_results, fused_weights), (sparse_results, sparse_weights) = results["fused"], results["sparse"]
    for key, result in sparse_results.items():
        level = key[1]
        assert result["engine"]["computed_by"] == ("sparse" if level == 2 else "fused"), key
        assert result["engine"]["trainer"] == "sparse" and result["engine"]["trainer_exact"] is False
        assert "sparse engine" in signature(result["engine"])
        for name, value in fused_weights[key].items():
            if level < 2:
                assert torch.equal(sparse_weights[key][name], value), (key, name)
            else:  # sparse products round differently
                torch.testing.assert_close(sparse_weights[key][name], value, rtol=1e-4, atol=1e-5)
    assert "engine" not in signature(fused_results[("imp", 0)]["engine"])
    assert fused_results[("imp", 0)]["engine"]["computed_by"] == "fused"


def test_extending_a_run_with_the_engine_that_trained_it_notes_nothing(tmp_path, capsys):
    for levels in (1, 2):
        config = tiny_config(f"lottery.levels={levels}")
        store = RunStore(tmp_path, config)
        Experiment(config, DATA, lambda: _lenet(), store, Runtime(engine="sparse", progress=False)).run()
    assert len(store.stored_results([0])) == 7
    assert "lth: note" not in capsys.readouterr().err


def test_the_cli_lists_the_engines_and_refuses_an_unknown_one_in_one_line(capsys, tmp_path):
    from lth.cli import main

    assert main(["engines"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["fused", "sparse", "channels-last", "autograd"]
    run = ["run", "lenet-mnist-quick", "--engine", "turbo", "--quiet", "--out", str(tmp_path)]
    assert main(run) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0


@pytest.mark.parametrize("second", ["auto", "autograd"])
def test_fused_replicas_resume_exactly_and_their_checkpoints_resume_under_vmap(second):
    """A group stopped part-way resumes to the unbroken numbers, bit for bit under fused
    replicas and within rounding under vmapped ones (one checkpoint format)."""
    config, seeds = _config(), [1, 2]

    def group():
        models = [_lenet(r) for r in range(2)]
        return models, [_mask(m, 3 + r) for r, m in enumerate(models)]

    unbroken, masks = group()
    unbroken_results = train_replicas(unbroken, DATA, config, seeds=seeds, masks=masks)
    spy = Copying()
    models, masks = group()
    train_replicas(models, DATA, config, seeds=seeds, masks=masks, checkpoint=spy)

    class Resume(RecordingCheckpoint):
        def load(self):
            return spy.saved[2]

    resumed, masks = group()
    results = train_replicas(
        resumed, DATA, config, seeds=seeds, masks=masks, checkpoint=Resume(), engine=second
    )
    tolerance = {"rtol": 0, "atol": 0} if second == "auto" else {"rtol": 1e-4, "atol": 1e-5}
    for model, reference in zip(resumed, unbroken, strict=True):
        for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, **tolerance, msg=name)
    for result, reference in zip(results, unbroken_results, strict=True):
        assert result.record() == pytest.approx(
            reference.record(), rel=tolerance["rtol"], abs=tolerance["atol"]
        )


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_tensor_learning_rate_as_a_captured_step_reads_it_gives_the_same_numbers(optimizer):
    """A captured CUDA graph reads the rate from a tensor; PyTorch's fused kernels must then do
    the same arithmetic as with a float. Checked here on the CPU kernels, which compute with a
    float rate in double, so the same in a float64 tensor (a float32 one rounds Adam differently:
    measured); the CUDA kernels compute in float32 (the CUDA test below)."""
    config = _config(optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 1e-3, momentum=0.9)
    results = []
    for as_tensor in (False, True):
        g0 = torch.Generator().manual_seed(0)
        params = [torch.randn(7, 5, generator=g0), torch.randn(5, generator=g0)]
        grads = [torch.zeros_like(p) for p in params]
        opt = fused.FusedOptimizer(params, grads, config)
        for t in range(5):
            for g in grads:
                g.copy_(torch.randn(g.shape, generator=torch.Generator().manual_seed(t)))
            lr = 1e-3 * (t + 1)
            opt.step(torch.tensor(lr, dtype=torch.float64) if as_tensor else lr)
        results.append([p.clone() for p in params])
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def test_cuda_graphs_are_refused_where_the_step_cannot_be_captured():
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        FusedMLP(_lenet(), DATA, _config(), seed=0, mask=None, augment=False, graphs=True)
    assert not FusedMLP(_lenet(), DATA, _config(), seed=0, mask=None, augment=False).graphs


def _on_cuda(data):
    return type(data)(
        name=data.name,
        train=type(data.train)(data.train.x.cuda(), data.train.y.cuda()),
        val=type(data.val)(data.val.x.cuda(), data.val.y.cuda()),
        test=type(data.test)(data.test.x.cuda(), data.test.y.cuda()),
        num_classes=data.num_classes,
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_captured_step_replays_the_eager_steps_numbers_on_cuda():
    cuda = _on_cuda(tiny_splits())
    weights = []
    for graphs in (False, True):
        model = _lenet().cuda()
        mask = _mask(model, 2).to("cuda")
        engine = FusedMLP(model, cuda, _config(), seed=0, mask=mask, augment=False, graphs=graphs)
        for t in range(40):
            engine.step(t, 1e-3 * (1 + t % 3))
        assert (engine.graph is not None) == graphs
        weights.append(engine.flat.clone())
    assert torch.equal(*weights)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("engine", ["captured", "fused", "autograd", "autograd-augmented"])
def test_a_cuda_step_never_makes_the_host_wait(engine):
    """Within an epoch a step copies nothing from pageable host memory (such a copy first waits
    for every queued kernel, so the host could never run ahead of the device) and calls nothing
    that synchronises (`torch.cuda.set_sync_debug_mode`)."""
    from torch.profiler import ProfilerActivity, profile

    from lth.training.autograd import OneModel

    cuda = _on_cuda(tiny_splits())  # 600 examples at batch 30: an epoch is 20 steps
    model = _lenet().cuda()
    kwargs = {"seed": 0, "mask": _mask(model, 2).to("cuda"), "augment": engine == "autograd-augmented"}
    if engine.startswith("autograd"):
        trainer = OneModel(model, cuda, _config(), **kwargs)
    else:
        trainer = FusedMLP(model, cuda, _config(), graphs=engine == "captured", **kwargs)
    for t in range(5):  # warm-up and capture synchronise, once
        trainer.step(t, 1e-3)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for t in range(5, 15):
                trainer.step(t, 1e-3 * (1 + t % 3))
            torch.cuda.set_sync_debug_mode(0)
            torch.arange(7).to("cuda")  # the one copy from pageable memory: the profiler sees them
            torch.cuda.synchronize()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    pageable = [e for e in prof.events() if "HtoD" in e.name and "Pageable" in e.name]
    assert len(pageable) == 1, [e.name for e in pageable]
