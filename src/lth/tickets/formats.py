"""A ticket's three export formats, all safetensors files whose metadata says what they hold
(`About.metadata`: lth version, format, the model config to rebuild the network, the data set,
trial, variant, level, weights and Pm):

- `sparse`: each pruned layer in CSR, as three tensors `NAME.crow_indices`, `NAME.col_indices`
  and `NAME.values` over its weight flattened to 2-D, [out, in·k·k] for a convolution (its
  shape is in the metadata's `layers`); every other tensor (biases, batch norm, unpruned layers)
  dense under its own name. Indices take the smallest of int16, int32 and int64 that holds them.
  Its size is `sparse_payload_bytes` plus the 8-byte length and the JSON header: per pruned layer
  of R rows, C columns and N survivors, N·(v + c) + (R + 1)·r bytes, where v is a value's bytes
  (4 for float32), c the column index's (2 for C ≤ 32,768) and r the row pointer's (2 or 4: it
  counts up to N); every other tensor its dense bytes. For LeNet-300-100 that is close to
  1.5 · Pm × the dense file (6 bytes a survivor against 4), e.g. 5.8% at Pm 3.6%.
- `prune`: the state dict of a network prepared with `torch.nn.utils.prune`: `NAME_orig` (the
  weights, zero where pruned) and `NAME_mask` for each pruned `NAME`; the rest unchanged.
- `dense`: the plain state dict with zeros in place (no mask: it cannot be told from a survivor
  that is zero, so `load_ticket` reads the other two).

Plain safetensors and torch read all three; README.md, "Using a ticket", shows the CSR one.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from lth.errors import ConfigError, StoreError
from lth.pruning import Mask
from lth.tickets.source import About, Ticket

FORMATS = ("sparse", "prune", "dense")
CSR_PARTS = ("crow_indices", "col_indices", "values")
PRUNE_SUFFIXES = ("_orig", "_mask")  # what torch.nn.utils.prune names a pruned parameter's tensors
# A bound on the header (8-byte length + JSON) of a sparse export, for the size check in the tests:
# the metadata (about 600 bytes) plus one entry (name, dtype, shape, offsets) per tensor.
HEADER_BOUND_BYTES = 2048
HEADER_BOUND_PER_TENSOR = 160


def index_dtype(largest: int) -> torch.dtype:
    """The smallest signed integer type that holds 0…`largest`: int16 for LeNet's column indices
    (up to 783), int32 for its row pointers (up to 235,200). Signed so plain torch reads them."""
    for dtype in (torch.int16, torch.int32):
        if largest <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def sparse_payload_bytes(
    shapes: Mapping[str, Sequence[int]], remaining: Mapping[str, int], value_bytes: int = 4
) -> int:
    """The tensor bytes of a sparse export (its file is this plus the header): `shapes` are the
    state dict's, `remaining` the survivors of each pruned layer (`Mask.remaining()`)."""
    total = 0
    for name, shape in shapes.items():
        if name not in remaining:
            total += value_bytes * math.prod(shape)
            continue
        rows, cols, n = shape[0], math.prod(shape[1:]), remaining[name]
        col, row = index_dtype(max(cols - 1, 0)).itemsize, index_dtype(n).itemsize
        total += n * (value_bytes + col) + (rows + 1) * row
    return total


def encode(ticket: Ticket, format: str) -> bytes:
    """The bytes of `ticket` exported in `format`."""
    if format not in FORMATS:
        raise ConfigError(f"unknown format {format!r}: choose one of {', '.join(FORMATS)}")
    tensors = {"sparse": _sparse, "prune": _prune, "dense": _dense}[format](ticket)
    meta = ticket.about.metadata(format)
    if format == "sparse":
        meta["layers"] = json.dumps({name: list(ticket.weights[name].shape) for name in ticket.mask})
    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=meta)


def _dense(ticket: Ticket) -> dict[str, torch.Tensor]:
    return dict(ticket.weights)


def _prune(ticket: Ticket) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in ticket.weights.items():
        if name in ticket.mask:
            out[name + "_orig"] = tensor
            out[name + "_mask"] = ticket.mask[name].to(tensor.dtype)
        else:
            out[name] = tensor
    return out


def _sparse(ticket: Ticket) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in ticket.weights.items():
        if name not in ticket.mask:
            out[name] = tensor
            continue
        keep = ticket.mask[name].reshape(tensor.shape[0], -1).bool()
        with warnings.catch_warnings():  # "sparse CSR support is in beta": used for its indices only
            warnings.simplefilter("ignore", UserWarning)
            pattern = keep.to_sparse_csr()
        n, cols = int(keep.sum()), keep.shape[1]
        out[f"{name}.crow_indices"] = pattern.crow_indices().to(index_dtype(n))
        out[f"{name}.col_indices"] = pattern.col_indices().to(index_dtype(max(cols - 1, 0)))
        out[f"{name}.values"] = tensor.reshape(keep.shape)[keep]  # row-major: CSR's order
    return out


def read_file(path: str | Path) -> Ticket:
    """A ticket from a `sparse` or `prune` export; a damaged file, or one that is not a ticket,
    is a one-line `StoreError`."""
    path = Path(path)
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (not a dict)
    except FileNotFoundError:
        raise StoreError(f"{path} does not exist; give a file that `lth export` wrote") from None
    except (SafetensorError, ValueError, OSError) as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StoreError(f"{path} is damaged or not a safetensors file ({why}); export it again") from None
    format = meta.get("format")
    if format == "dense":
        raise ConfigError(
            f"{path} is a dense export, which keeps no mask; load it with load_state_dict, or export "
            "the level as --format sparse or prune for load_ticket"
        )
    if format not in ("sparse", "prune"):
        raise StoreError(f"{path} is not a ticket `lth export` wrote (no format in its metadata)")
    try:
        about = About.from_metadata(meta)
        weights, mask = _from_sparse(tensors, meta) if format == "sparse" else _from_prune(tensors)
    except (KeyError, ValueError, RuntimeError, IndexError) as err:
        raise StoreError(f"{path} is damaged ({type(err).__name__}: {err}); export it again") from None
    return Ticket(weights=weights, mask=Mask(mask), about=about)


def _from_sparse(
    tensors: dict[str, torch.Tensor], meta: Mapping[str, str]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    layers = json.loads(meta["layers"])
    parts = {f"{name}.{part}" for name in layers for part in CSR_PARTS}
    weights = {k: v for k, v in tensors.items() if k not in parts}
    mask = {}
    for name, shape in layers.items():
        crow, col, values = (tensors[f"{name}.{part}"] for part in CSR_PARTS)
        rows, cols = shape[0], math.prod(shape[1:])
        if len(crow) != rows + 1 or int(crow[-1]) != len(values) or len(col) != len(values):
            raise ValueError(f"{name}'s CSR parts do not fit together")
        row = torch.repeat_interleave(torch.arange(rows), crow.long().diff())
        dense = torch.zeros(rows, cols, dtype=values.dtype)
        keep = torch.zeros(rows, cols, dtype=torch.bool)
        dense[row, col.long()] = values
        keep[row, col.long()] = True
        weights[name], mask[name] = dense.reshape(shape), keep.reshape(shape)
    return weights, mask


def _from_prune(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    weights, mask = {}, {}
    for key, tensor in tensors.items():
        if key.endswith("_mask"):
            continue
        if key.endswith("_orig"):
            name = key.removesuffix("_orig")
            mask[name] = tensors[name + "_mask"]
            weights[name] = tensor * mask[name]
        else:
            weights[key] = tensor
    return weights, mask
