"""Naming runs in a comparison by what differs between their configs.

Two runs of a comparison usually differ in one or two settings (strategy reset vs continue, a
pruning rate); the label says exactly those, e.g. "lottery.strategy=continue", so a user never
has to type one and a label can never disagree with the config behind it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from lth.config import Config

# Words about a run, not settings of it: never what tells two runs apart.
_IGNORED = ("description", "expected_runtime")


def flatten(config: Config) -> dict[str, Any]:
    """`{"lottery.strategy": "reset", "pruning.rates.fc": 0.2, …}`: every leaf by its dotted key."""
    out: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, f"{name}.")
            else:
                out[name] = value

    walk(config.to_dict(), "")
    return {k: v for k, v in out.items() if k not in _IGNORED}


def differing_keys(configs: Sequence[Config]) -> list[str]:
    """Dotted keys whose value is not the same in every config (missing counts as different)."""
    flat = [flatten(c) for c in configs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    return [k for k in keys if len({_text(f.get(k, "∅")) for f in flat}) > 1]


def unhashed_keys(config: Config) -> set[str]:
    """Dotted keys of fields that say how much to run (levels, trials, variants), not what."""
    out: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            elif not f.metadata.get("hashed", True):
                out.add(f"{prefix}{f.name}")

    walk(config, "")
    return out


def labels(configs: Sequence[Config], fallbacks: Sequence[str]) -> list[str]:
    """One label per config: its values of the keys that differ, e.g. "lottery.strategy=continue".

    Keys that change what is computed come first: if any differ, only they label the runs (a run
    with more levels is not a different experiment); otherwise the how-much keys do. With a single
    config, or configs that do not differ, the fallbacks (run directory names) are used;
    duplicates get a "#n" suffix so every label names one run.
    """
    keys = differing_keys(configs) if len(configs) > 1 else []
    computed = [k for k in keys if k not in unhashed_keys(configs[0])]
    keys = computed or keys
    if keys:
        flat = [flatten(c) for c in configs]
        names = [", ".join(f"{k}={_text(f.get(k, '∅'))}" for k in keys) for f in flat]
    else:
        names = list(fallbacks)
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 and names.count(name) == 1 else f"{name} #{seen[name]}")
    return out


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_text(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
