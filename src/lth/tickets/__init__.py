"""Tickets people can use: a stored level as a working module, export files, sparse inference.

    >>> model = lth.load_ticket("runs/lenet300-mnist-…", level=15)   # masked by torch.nn.utils.prune
    >>> lth.evaluate(model, "mnist")                                 # the stored final_test_accuracy
    >>> lth.export_ticket("runs/lenet300-mnist-…", "t.safetensors", level=15)  # `lth export`
    >>> fast = lth.sparse_model(model)                               # a SparseMLP of CSR products

`source.py` reads a level, `formats.py` writes and reads the export files, `load.py` builds the
module and evaluates it, `export.py` writes a file, `sparse.py` swaps in sparse layers.
"""

from lth.tickets.export import export_ticket
from lth.tickets.formats import FORMATS, read_file, sparse_payload_bytes
from lth.tickets.load import apply_mask, evaluate, load_ticket
from lth.tickets.source import About, Ticket, read_level
from lth.tickets.sparse import SparseLinear, SparseMLP, sparse_model

__all__ = [
    "FORMATS",
    "About",
    "SparseLinear",
    "SparseMLP",
    "Ticket",
    "apply_mask",
    "evaluate",
    "export_ticket",
    "load_ticket",
    "read_file",
    "read_level",
    "sparse_model",
    "sparse_payload_bytes",
]
