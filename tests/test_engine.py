"""What trains a result, recorded with it: the same numbers at any thread count, the engine in
every result.json, a note when a run is extended by another engine, and the PyTorch floor."""

import json

import pandas as pd
import pytest
import torch

from lth.config import TrainingConfig
from lth.environment import cpu_model, require_torch, signature, trial_signatures
from lth.lottery import Experiment, Runtime
from lth.models import build, initialize
from lth.store import RunStore
from lth.training import train
from tests.helpers import tiny_config, tiny_splits

# Full-size LeNet layers: MKL splits products of this size across threads (tiny ones it does not).
DATA = tiny_splits(n_train=1200, shape=(1, 28, 28), classes=10)


def _train_with_threads(threads: int) -> dict[str, torch.Tensor]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = initialize(build("lenet300", DATA.input_shape, DATA.num_classes), 0)
        train(model, DATA, TrainingConfig(steps="30it", eval_every="10it"), seed=0)
    finally:
        torch.set_num_threads(before)
    return model.state_dict()


def test_the_thread_count_does_not_change_a_single_bit():
    # Fails with MKL's default sums (run the suite with `MKL_CBWR=` to see it): lth sets
    # MKL_CBWR=AUTO,STRICT at import (lth/environment.py).
    one, two = _train_with_threads(1), _train_with_threads(2)
    for name, value in one.items():
        assert torch.equal(value, two[name]), name


def _experiment(tmp_path, *overrides: str) -> tuple[RunStore, Experiment]:
    config = tiny_config(*overrides)
    store = RunStore(tmp_path, config)

    def make_model():
        return build("lenet300", DATA.input_shape, DATA.num_classes, hidden=(32, 16))

    return store, Experiment(config, DATA, make_model, store, Runtime(progress=False))


def test_every_result_records_its_engine(tmp_path):
    store, experiment = _experiment(tmp_path, "lottery.levels=1", "lottery.replicas=1")
    experiment.run()
    results = store.stored_results([0])
    assert len(results) == 4  # dense, then the ticket and both controls
    for result in results:
        assert result["engine"]["threads"] == torch.get_num_threads()
        assert result["engine"]["torch"] == torch.__version__
        assert result["engine"]["max_replicas"] == 1
        assert signature(result["engine"]) == f"torch {torch.__version__} on cpu ({cpu_model()}), one model"


def test_extending_a_run_trained_by_another_engine_says_so(tmp_path, capsys):
    store, experiment = _experiment(tmp_path, "lottery.levels=1")
    experiment.run()
    assert "lth: note" not in capsys.readouterr().err
    # As if level 1 had been trained by another PyTorch build: extending the run must say so.
    stored = store.level(0, "imp", 1).path / "result.json"
    result = json.loads(stored.read_text())
    result["engine"]["torch"] = "2.5.1+cpu"
    stored.write_text(json.dumps(result))
    _, more = _experiment(tmp_path, "lottery.levels=2")
    more.run()
    err = capsys.readouterr().err
    before = f"torch 2.5.1+cpu on cpu ({cpu_model()}), one model"
    assert f"lth: note: this run's stored levels were trained by {before}" in err
    assert f"new levels train with torch {torch.__version__} on cpu" in err
    # Nothing left to train: no note.
    _, again = _experiment(tmp_path, "lottery.levels=2")
    rows = pd.DataFrame(again.run())
    assert "lth: note" not in capsys.readouterr().err and rows.level.max() == 2


def test_results_from_before_engines_were_recorded_are_unrecorded():
    assert signature(None) == "unrecorded"
    threads = {"device": "cpu", "cpu": "AMD EPYC", "torch": "2.13.0+cpu", "max_replicas": 1, "threads": 2}
    assert signature(threads | {"mkl_cbwr": ""}) == "torch 2.13.0+cpu on cpu (AMD EPYC), one model, 2 threads"
    assert signature(threads | {"mkl_cbwr": "AUTO,STRICT"}) == "torch 2.13.0+cpu on cpu (AMD EPYC), one model"


def test_the_cpu_model_tells_engines_apart_and_the_commit_does_not():
    """The same trial on an AMD EPYC and an Intel Xeon (same torch build, strict sums) parted at
    level 0 (lth.environment's docstring); exact engines give the same numbers at any commit."""
    amd = {"device": "cpu", "cpu": "AMD EPYC", "torch": "2.13.0+cpu", "max_replicas": 1, "threads": 1}
    amd |= {"mkl_cbwr": "AUTO,STRICT", "trainer": "fused", "trainer_exact": True, "lth_commit": "a" * 40}
    assert signature(amd) != signature(amd | {"cpu": "Intel(R) Xeon(R) Processor"})
    assert signature(amd) == signature(amd | {"lth_commit": "b" * 40, "cpu_capability": "AVX2"})
    assert signature(amd | {"cpu": None}) == "torch 2.13.0+cpu on cpu (model unrecorded), one model"
    gpu = amd | {"device": "NVIDIA H200"}
    assert (
        signature(gpu)
        == signature(gpu | {"cpu": "Intel(R) Xeon(R) Processor"})
        == "torch 2.13.0+cpu on NVIDIA H200, one model"
    )
    # Per trial, in trial order: trial 3 mixes the two CPUs, trial 1 does not, whatever the commit.
    pairs = [
        (3, amd),
        (1, amd),
        (3, amd | {"cpu": "Intel(R) Xeon(R) Processor"}),
        (1, amd | {"lth_commit": "b" * 40}),
    ]
    assert trial_signatures(pairs) == {
        1: [signature(amd)],
        3: sorted({signature(amd), signature(pairs[2][1])}),
    }


@pytest.mark.parametrize("version", ["2.3.1", "1.13.0+cpu", "2.0.0a0+git123"])
def test_a_pytorch_older_than_the_fused_cpu_optimisers_is_refused_in_one_line(version):
    with pytest.raises(ImportError, match=r"^lth needs torch>=2\.4 .*found .*: pip install 'torch>=2\.4'$"):
        require_torch(version)


@pytest.mark.parametrize("version", ["2.4.0", "2.13.0+cpu", "3.0.0"])
def test_a_recent_pytorch_is_accepted(version):
    require_torch(version)


def test_the_report_lists_the_engines_and_flags_a_trial_that_mixes_them(tmp_path):
    from lth.report.load import engine_lines, read_run

    store, experiment = _experiment(tmp_path, "lottery.levels=2", "lottery.trials=2")
    experiment.run()
    here = f"torch {torch.__version__} on cpu ({cpu_model()}), one model"
    run = read_run(store.path)
    assert run.engines == {here: 14} and run.mixed_trials == {}  # 2 trials × (dense + 2 levels × 3)
    stored = store.level(1, "reinit", 2).path / "result.json"
    result = json.loads(stored.read_text())
    result["engine"]["device"] = "NVIDIA H100 80GB HBM3"
    stored.write_text(json.dumps(result))
    run = read_run(store.path)
    gpu = f"torch {torch.__version__} on NVIDIA H100 80GB HBM3, one model"
    assert run.engines == {here: 13, gpu: 1}
    assert run.mixed_trials == {1: sorted([gpu, here])}
    lines = engine_lines(run)
    assert lines[:2] == [
        f"Trained by {here} (13 results; trials 0, 1)",
        f"Trained by {gpu} (1 result; trial 1)",
    ]
    assert lines[2].startswith(f"Trial 1 mixes engines ({'; '.join(sorted([gpu, here]))})")
