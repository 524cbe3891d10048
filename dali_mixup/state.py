"""The iterator's resume state as a small codec: what ``state_dict()`` writes and
``load_state_dict()`` reads.

A state is JSON: DALI's pipeline checkpoints (base64 text), the mixup samplers' generator
states, the ``MixupConfig`` in force and the seed, and what the state belongs to — the data
set's digest and size, the shard layout, the batch size and the last-batch policy. Loading a
state into an iterator over other data, shards, batch size or policy is refused with a message
naming each difference: DALI would otherwise resume at a position that means something else
(a shorter epoch, duplicates, or an error one batch later).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from .config import MixupConfig

FORMAT = "dali-mixup/2"


class StateError(ValueError):
    """A state that cannot be loaded: saved by another loader (other data, layout, sample kind or
    configuration: the message names each difference) or damaged."""

#: states written before the identity, config and seed were recorded: still loadable, unchecked
LEGACY_FORMATS = ("dali-mixup/1",)


def dataset_digest(source) -> Optional[str]:
    """SHA-256 over a ``Source``'s kind, files, labels, classes and shards; ``None`` without one."""
    if source is None:
        return None
    h = hashlib.sha256()
    for part in (source.kind.value, source.files, source.labels, source.classes, source.shards):
        h.update(repr(part).encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class IteratorState:
    """A decoded state.

    Attributes:
        checkpoints: DALI's checkpoint of each pipeline.
        samplers: each ``MixupSampler.state_dict()``.
        mixup: the ``MixupConfig`` in force when saved (``None`` in legacy states).
        seed: the iterator's seed (``None`` in legacy states).
        identity: what the state belongs to (``{}`` in legacy states): see ``check_identity``.
    """

    checkpoints: List[bytes]
    samplers: List[Dict[str, Any]]
    mixup: Optional[MixupConfig] = None
    seed: Optional[int] = None
    identity: Optional[Dict[str, Any]] = None


def encode(state: IteratorState) -> Dict[str, Any]:
    return {
        "format": FORMAT,
        "dali": [base64.b64encode(cp if isinstance(cp, bytes) else cp.encode()).decode("ascii") for cp in state.checkpoints],
        "samplers": list(state.samplers),
        "mixup": state.mixup.to_dict() if state.mixup is not None else None,
        "seed": state.seed,
        "identity": dict(state.identity or {}),
    }


def decode(data: Any) -> IteratorState:
    if not isinstance(data, dict) or (data.get("format") != FORMAT and data.get("format") not in LEGACY_FORMATS):
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise StateError(f"state is not a {FORMAT} state_dict (got keys {got})")
    try:
        checkpoints = [base64.b64decode(cp.encode("ascii")) for cp in data["dali"]]
        samplers = list(data["samplers"])
        mixup = MixupConfig(**data["mixup"]) if data.get("mixup") is not None else None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise StateError(f"state_dict is damaged: {type(e).__name__}: {e}") from None
    if not all(isinstance(s, dict) for s in samplers):
        raise StateError("state_dict is damaged: a sampler entry is not a dict")
    if len(checkpoints) != len(samplers):
        raise StateError(f"state_dict is damaged: {len(checkpoints)} DALI checkpoints but {len(samplers)} sampler states")
    return IteratorState(checkpoints, samplers, mixup, data.get("seed"), data.get("identity") or {})


_WHAT = {
    "dataset": "data set (files, labels, classes)",
    "epoch_size": "samples in the data set",
    "shards": "shard layout (shard_id, num_shards) per pipeline",
    "batch_size": "batch size per pipeline",
    "last_batch_policy": "last_batch_policy",
    "pipelines": "number of pipelines",
}


def check_identity(saved: Dict[str, Any], current: Dict[str, Any]) -> None:
    """Refuse a state saved for other data or another layout; the message names every difference.
    Keys missing on either side (a legacy state, an iterator without a source) are not compared."""
    diffs = []
    saved_config, config = saved.get("config"), current.get("config")
    if isinstance(saved_config, dict) and isinstance(config, dict):
        for key in sorted(set(saved_config) | set(config), key=lambda k: (k != "kind", k)):
            a, b = saved_config.get(key, "(not set)"), config.get(key, "(not set)")
            if _plain(a) != _plain(b):
                diffs.append(f"{key}: state {a!r}, this loader {b!r}")
        if saved_config.get("kind") != config.get("kind"):  # another kind: the rest says nothing more
            raise StateError(f"load_state_dict: this state belongs to a {saved_config.get('kind')!r} loader, this "
                             f"is a {config.get('kind')!r} loader")
    for key, what in _WHAT.items():
        if key in saved and key in current and saved[key] is not None and current[key] is not None:
            if _plain(saved[key]) != _plain(current[key]):
                if key == "dataset":
                    diffs.append(f"{what}: the state's digest {str(saved[key])[:12]} != this loader's {str(current[key])[:12]}")
                else:
                    diffs.append(f"{what}: state {saved[key]!r}, this iterator {current[key]!r}")
    if diffs:
        raise StateError("load_state_dict: this state belongs to another loader; " + "; ".join(diffs))


def _plain(v):
    """Tuples and lists compare equal once through JSON."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v
