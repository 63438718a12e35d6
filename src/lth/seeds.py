"""Seeds derived from a trial's seed, so each random stream is independent and reproducible."""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A 63-bit seed determined by `parts`, e.g. `derive_seed(trial_seed, "order", epoch)`."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
