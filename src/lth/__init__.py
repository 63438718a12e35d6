"""lth: find and study lottery tickets (Frankle & Carbin, ICLR 2019).

>>> import lth
>>> summary = lth.run("lenet-mnist-quick")          # same as `lth run lenet-mnist-quick`
>>> config = lth.load_preset("lenet-mnist")          # a typed, validated Config
>>> summary = lth.find_tickets(my_module, train=(x, y), test=(x_test, y_test))
>>> table = lth.instability("lenet-mnist-instability", rewind=[0, 100, 500])  # `lth instability`
>>> lth.write_record("runs/lenet300-mnist-…", "docs/reproductions/lenet-mnist")  # `lth record`
"""

# First: it sets MKL_CBWR before PyTorch makes its first matrix product (see environment.py).
import lth.environment  # noqa: F401
from lth._version import __version__ as __version__
from lth.api import find_tickets, instability, run
from lth.config import Config, load_preset, preset_names, with_overrides
from lth.errors import ConfigError, DataError, LthError, StoreError
from lth.pruning import Mask
from lth.record import check_record, write_record

__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "LthError",
    "Mask",
    "StoreError",
    "check_record",
    "find_tickets",
    "instability",
    "load_preset",
    "preset_names",
    "run",
    "with_overrides",
    "write_record",
]
