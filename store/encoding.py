"""How values are written to Redis: compact JSON without NaN, hash fields as text, and back."""

from __future__ import annotations

import json
import math
import time
from typing import Any


def now() -> float:
    """Timestamps in records and indexes: seconds since the epoch."""
    return time.time()


def dumps(data: Any) -> str:
    """Compact JSON; NaN and infinity are refused (JSON has neither): pass data through `clean_json` first."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "value"):  # Enum
        return value.value
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def clean_json(data: Any) -> Any:
    """``data`` with NaN/inf floats replaced by None (JSON has no NaN)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: clean_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [clean_json(v) for v in data]
    return data


def hash_field(value: Any) -> str:
    """A hash field value as text (Lua would print floats with only 14 digits)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return repr(value)
    return dumps(value)


def text(value: Any) -> Any:
    """A reply of a bytes client as text; anything else as it is."""
    return value.decode() if isinstance(value, bytes) else value
