"""lth: find and study lottery tickets (Frankle & Carbin, ICLR 2019).

>>> import lth
>>> summary = lth.run("lenet-mnist-quick")          # same as `lth run lenet-mnist-quick`
>>> config = lth.load_preset("lenet-mnist")          # a typed, validated Config
>>> summary = lth.find_tickets(my_module, train=(x, y), test=(x_test, y_test))
>>> table = lth.instability("lenet-mnist-instability", rewind=[0, 100, 500])  # `lth instability`
>>> lth.write_record("runs/lenet300-mnist-…", "docs/reproductions/lenet-mnist")  # `lth record`
>>> ticket = lth.load_ticket("runs/lenet300-mnist-…", level=15); lth.evaluate(ticket, "mnist")
"""

# First: it sets MKL_CBWR before PyTorch makes its first matrix product (see environment.py).
import lth.environment  # noqa: F401
from lth._version import __version__ as __version__
from lth.api import find_tickets, instability, run
from lth.config import Config, load_preset, preset_names, with_overrides
from lth.errors import ConfigError, DataError, LthError, StoreError
from lth.pruning import Mask
from lth.record import check_record, write_record
from lth.tickets import evaluate, export_ticket, load_ticket, sparse_model

__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "LthError",
    "Mask",
    "StoreError",
    "check_record",
    "evaluate",
    "export_ticket",
    "find_tickets",
    "instability",
    "load_preset",
    "load_ticket",
    "preset_names",
    "run",
    "sparse_model",
    "with_overrides",
    "write_record",
]
