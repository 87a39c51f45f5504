"""torch device names checked before anything runs: one clear error instead of a traceback mid-run."""

from __future__ import annotations

from outfitrec.data.outfits import DataError

KNOWN = ("cpu", "cuda", "cuda:N", "mps")


def check_device(name: str, available: bool = True) -> str:
    """`name` when it is a torch device (this machine has, unless available=False); else DataError (a ValueError).

    available=False checks the name only (a config written for a GPU machine
    stays readable on a CPU one).
    """
    import torch

    text = str(name).strip()
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise DataError(f"unknown device {name!r} (expected one of {', '.join(KNOWN)})") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise DataError(
            f"device {name!r}: unsupported device type {device.type!r} (expected one of {', '.join(KNOWN)})"
        )
    if device.type == "cpu" or not available:
        return text
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DataError(f"device {name!r}: no CUDA device is available on this machine (use cpu)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DataError(f"device {name!r}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
        return text
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DataError(f"device {name!r}: MPS is not available on this machine (use cpu)")
    return text
