"""Device names the trainer accepts, checked without importing torch (the API and `serve` check them too)."""

from __future__ import annotations

import re

DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")
"""cpu, cuda (the current GPU), cuda:N or mps."""


def check_device(device: str | None) -> str | None:
    """``device`` when it is one the trainer accepts (or None: the trainer picks); else ValueError naming it."""
    if device is not None and not DEVICE_PATTERN.match(device):
        raise ValueError(f"--device must be cpu, cuda, cuda:N or mps; got {device!r}")
    return device
