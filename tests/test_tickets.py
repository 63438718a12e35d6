"""Tickets people can use (issue 13, parts 1-3): `lth.load_ticket`, `lth.evaluate`, `lth export`
and `lth.sparse_model`, on a tiny run on real MNIST (a few seconds)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch.nn.utils import prune

import lth
from lth import cli, layout
from lth.models import build, names, prunable_layers
from lth.store import read_tensors
from lth.tickets import SparseLinear, SparseMLP, apply_mask, read_file, sparse_payload_bytes
from lth.tickets.formats import HEADER_BOUND_BYTES, HEADER_BOUND_PER_TENSOR


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, mnist_root) -> Path:
    """LeNet-300-100 on MNIST, 30 iterations a level, levels 0 and 1, the ticket and reinit; one
    thread, which a loaded 2-core machine runs fastest (README, "Sweeps")."""
    config = lth.with_overrides(
        lth.load_preset("lenet-mnist-quick"),
        [
            "training.steps='30it'",
            "training.eval_every='30it'",
            "lottery.levels=1",
            "lottery.variants=['imp', 'reinit']",
        ],
    )
    out = tmp_path_factory.mktemp("tickets")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = lth.run(config, out=out, data_dir=mnist_root, progress=False, device="cpu")
    finally:
        torch.set_num_threads(threads)
    return Path(summary.attrs["run_dir"])


def result(run: Path, variant: str, level: int) -> dict:
    return json.loads((layout.level_dir(run, 0, variant, level) / layout.RESULT).read_text())


def stored(run: Path, variant: str, level: int, name: str) -> dict[str, torch.Tensor]:
    return read_tensors(layout.level_dir(run, 0, variant, level) / layout.tensors(name))


def test_a_loaded_ticket_gives_the_stored_test_accuracy_exactly(run_dir, mnist_root):
    for variant, level in [("imp", 0), ("imp", 1), ("reinit", 1)]:
        model = lth.load_ticket(run_dir, level=level, variant=variant)
        assert prune.is_pruned(model) and hasattr(model.hidden[0], "weight_orig")
        assert hasattr(model.hidden[0], "weight_mask")
        accuracy = lth.evaluate(model, "mnist", data_dir=mnist_root)
        assert accuracy == result(run_dir, variant, level)["final_test_accuracy"]


def test_init_weights_are_the_level_start_and_the_mask_is_the_stored_one(run_dir):
    model = lth.load_ticket(run_dir, level=1, weights="init")
    init, mask = stored(run_dir, "imp", 1, "init"), stored(run_dir, "imp", 1, "mask")
    for name in ("hidden.0.weight", "hidden.1.weight", "output.weight"):
        module = model.get_submodule(name.rpartition(".")[0])
        assert torch.equal(module.weight, init[name])
        assert torch.equal(module.weight_mask.bool(), mask[name])


def test_evaluate_takes_tensors(run_dir):
    model = lth.load_ticket(run_dir, level=1)
    x, y = torch.randn(50, 1, 28, 28), torch.randint(0, 10, (50,))
    expected = (model(x).argmax(1) == y).float().mean().item()
    assert lth.evaluate(model, (x, y)) == pytest.approx(expected)


def test_a_sparse_export_loads_back_with_identical_outputs(run_dir, tmp_path):
    path = lth.export_ticket(run_dir, tmp_path / "t.safetensors", level=1, format="sparse")
    direct, loaded = lth.load_ticket(run_dir, level=1), lth.load_ticket(path)
    x = torch.randn(64, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(direct(x), loaded(x))
    about = read_file(path).about
    assert (about.level, about.trial, about.variant, about.weights) == (1, 0, "imp", "final")
    assert about.percent_remaining == result(run_dir, "imp", 1)["percent_remaining"]
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        assert meta["format"] == "sparse" and meta["lth_version"] == lth.__version__
        assert f.get_tensor("hidden.0.weight.col_indices").dtype == torch.int16  # 784 columns
        assert f.get_tensor("hidden.0.weight.crow_indices").dtype == torch.int32


def test_a_sparse_file_is_the_formula_plus_its_header(run_dir, tmp_path):
    """File bytes = sparse_payload_bytes (N·(4 + c) + (R + 1)·r per pruned layer, dense bytes for
    the rest) + 8 + the JSON header, which stays under its stated bound."""
    final, mask = stored(run_dir, "imp", 1, "final"), stored(run_dir, "imp", 1, "mask")
    formula = sparse_payload_bytes(
        {k: v.shape for k, v in final.items()}, {k: int(v.sum()) for k, v in mask.items()}
    )
    size = lth.export_ticket(run_dir, tmp_path / "t.safetensors", level=1).stat().st_size
    tensors = len(final) + 2 * len(mask)  # three CSR parts replace each pruned weight
    assert formula + 8 < size <= formula + 8 + HEADER_BOUND_BYTES + HEADER_BOUND_PER_TENSOR * tensors
    dense = lth.export_ticket(run_dir, tmp_path / "d.safetensors", level=1, format="dense").stat().st_size
    pm = result(run_dir, "imp", 1)["percent_remaining"] / 100
    assert size / dense == pytest.approx(1.5 * pm, abs=0.02)  # 6 bytes a survivor against 4


def test_a_prune_export_loads_into_a_model_prepared_with_torch_prune(run_dir, tmp_path):
    path = lth.export_ticket(run_dir, tmp_path / "p.safetensors", level=1, format="prune")
    model = build("lenet300", (1, 28, 28), 10)
    for name in ("hidden.0", "hidden.1", "output"):
        prune.identity(model.get_submodule(name), "weight")
    model.load_state_dict(load_file(path))
    for name in ("hidden.0", "hidden.1", "output"):
        prune.remove(model.get_submodule(name), "weight")
    dense = load_file(lth.export_ticket(run_dir, tmp_path / "d.safetensors", level=1, format="dense"))
    assert all(torch.equal(v, dense[k]) for k, v in model.state_dict().items())


def test_a_dense_export_is_the_masked_weights(run_dir, tmp_path):
    dense = load_file(lth.export_ticket(run_dir, tmp_path / "d.safetensors", level=1, format="dense"))
    final, mask = stored(run_dir, "imp", 1, "final"), stored(run_dir, "imp", 1, "mask")
    assert dense.keys() == final.keys()
    for name, tensor in dense.items():
        expected = final[name] * mask[name] if name in mask else final[name]
        assert torch.equal(tensor, expected)
        if name in mask:
            assert not tensor[~mask[name]].any()


def test_plain_safetensors_and_torch_read_a_sparse_export(run_dir, tmp_path):
    """The README's code ("Using a ticket"), as it is there."""
    path = lth.export_ticket(run_dir, tmp_path / "ticket.safetensors", level=1)
    # --- from README.md
    import json

    import torch
    from safetensors import safe_open

    state = {}
    with safe_open(str(path), framework="pt") as f:
        layers = json.loads(f.metadata()["layers"])  # pruned weight name -> its shape
        parts = {f"{n}.{p}" for n in layers for p in ("crow_indices", "col_indices", "values")}
        for name, shape in layers.items():
            weight = torch.sparse_csr_tensor(
                f.get_tensor(f"{name}.crow_indices").long(),
                f.get_tensor(f"{name}.col_indices").long(),
                f.get_tensor(f"{name}.values"),
                size=(shape[0], torch.Size(shape[1:]).numel()),  # a conv weight: [out, in·k·k]
                check_invariants=True,
            )
            state[name] = weight.to_dense().reshape(shape)
        state |= {k: f.get_tensor(k) for k in f.keys() if k not in parts}  # noqa: SIM118 (biases, …)
    # ---
    dense = load_file(lth.export_ticket(run_dir, tmp_path / "d.safetensors", level=1, format="dense"))
    assert state.keys() == dense.keys() and all(torch.equal(state[k], dense[k]) for k in dense)


def _shape(name: str) -> tuple[int, ...]:
    return (1, 28, 28) if name == "lenet300" else (3, 32, 32)


@pytest.mark.parametrize("name", names())
def test_a_sparse_model_equals_the_masked_model(name):
    """Every registered model, its prunable weights masked at random (10% kept), random inputs."""
    torch.manual_seed(0)
    model = build(name, _shape(name), 10).eval()
    masks = {w: torch.rand_like(p) < 0.1 for w, p in model.named_parameters() if w in prunable_layers(model)}
    apply_mask(model, {w: m.float() for w, m in masks.items()})
    fast = lth.sparse_model(model)
    assert any(isinstance(m, SparseLinear) for m in fast.modules())
    assert not any(isinstance(m, torch.nn.Linear) and name in masks for name, m in fast.named_modules())
    for batch in (3, 1):  # batch 1 takes the matrix-vector path
        x = torch.randn(batch, *_shape(name))
        with torch.no_grad():
            expected, got = model(x), fast(x)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_a_sparse_linear_takes_one_unbatched_example_and_no_bias():
    torch.manual_seed(0)
    layer = torch.nn.Linear(20, 7, bias=False)
    keep = torch.rand(7, 20) < 0.3
    fast = SparseLinear(layer.weight * keep, keep, None)
    with torch.no_grad():
        for x in (torch.randn(20), torch.randn(1, 20), torch.randn(4, 20), torch.randn(2, 3, 20)):
            torch.testing.assert_close(fast(x), torch.nn.functional.linear(x, layer.weight * keep))


def test_a_sparse_model_takes_a_plain_model_and_a_mask(run_dir):
    plain = build("lenet300", (1, 28, 28), 10)
    plain.load_state_dict(stored(run_dir, "imp", 1, "final"))
    mask = stored(run_dir, "imp", 1, "mask")
    fast = lth.sparse_model(plain, mask, max_density=0.85)  # the output layer keeps 90%: dense
    # LeNet is flatten → (Linear → ReLU)* → Linear: one SparseMLP of its layers, in order.
    assert isinstance(fast, SparseMLP) and [type(m) for m in fast.layers] == [
        SparseLinear,
        SparseLinear,
        torch.nn.Linear,
    ]
    ticket = lth.load_ticket(run_dir, level=1)
    for batch in (5, 1):
        x = torch.randn(batch, 1, 28, 28)
        with torch.no_grad():
            torch.testing.assert_close(fast(x), ticket(x), rtol=1e-4, atol=1e-5)
    doubled = fast.to(torch.float64)  # moving the model refreshes the tensors its forward holds
    with torch.no_grad():
        got = doubled(x.double())
    assert got.dtype == torch.float64
    torch.testing.assert_close(got.float(), ticket(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(lth.ConfigError, match="no masked layer"):
        lth.sparse_model(plain)


def test_lth_export_writes_the_file(run_dir, tmp_path, capsys):
    out = tmp_path / "t.safetensors"
    assert cli.main(["export", str(run_dir), "--level", "1", "--variant", "reinit", "--out", str(out)]) == 0
    assert f"{out}: sparse" in capsys.readouterr().out
    assert read_file(out).about.variant == "reinit"


def _damage(run: Path, tmp_path: Path, what: str) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    level = layout.level_dir(copy, 0, "imp", 1)
    if what == "unfinished":
        (level / layout.RESULT).unlink()
    else:
        weights = level / layout.tensors("final")
        weights.write_bytes(weights.read_bytes()[:1000])
    return copy


@pytest.mark.parametrize(
    ("case", "args", "message"),
    [
        ("unfinished", ["--level", "1"], "level 1 of trial 0 (imp) is not finished"),
        ("damaged", ["--level", "1"], "is damaged"),
        (None, ["--level", "1", "--trial", "3"], "unknown trial 3"),
        (None, ["--level", "1", "--variant", "flipped"], "unknown variant 'flipped'"),
        (None, ["--level", "9"], "level 9 is outside this run"),
    ],
)
def test_bad_input_is_one_line(run_dir, tmp_path, capsys, case, args, message):
    run = _damage(run_dir, tmp_path, case) if case else run_dir
    code = cli.main(["export", str(run), *args, "--out", str(tmp_path / "t.safetensors")])
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "t.safetensors").exists()


def test_a_damaged_export_file_is_one_line(run_dir, tmp_path):
    path = lth.export_ticket(run_dir, tmp_path / "t.safetensors", level=1)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(lth.StoreError, match="is damaged") as caught:
        lth.load_ticket(path)
    assert "\n" not in str(caught.value)
    dense = lth.export_ticket(run_dir, tmp_path / "d.safetensors", level=1, format="dense")
    with pytest.raises(lth.ConfigError, match="keeps no mask"):
        lth.load_ticket(dense)


def test_sparse_csr_warnings_are_kept_inside(run_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lth.sparse_model(lth.load_ticket(run_dir, level=1))
