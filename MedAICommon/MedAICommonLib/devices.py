"""Where torch runs: ``auto``, ``cpu``, ``cuda`` (``cuda:N``) or ``mps``, with CPU fallback on out-of-memory.

torch is imported inside the functions, so importing this module costs nothing.

Example::

    device = resolveDevice("auto")  # CUDA, then Apple MPS, then CPU
    logits = runWithDeviceFallback(lambda d: model.to(d)(image.to(d)).cpu(), device, log=print)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from MedAICommonLib.errors import MedAIInputError

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICE_NAMES", "resolveDevice", "describeDevice", "isOutOfMemoryError", "runWithDeviceFallback"]

DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")
"""What users may type; ``cuda:N`` picks GPU number N."""

_cudaIndexPattern = re.compile(r"^cuda:(\d+)$")


def _mpsAvailable() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolveDevice(name: str | torch.device = "auto") -> torch.device:
    """The torch device for a user's choice.

    Args:
        name: ``"auto"`` (CUDA if available, then Apple MPS, then CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"`` (case and surrounding spaces ignored), or a ``torch.device``.

    Returns:
        The device; an explicit choice is returned only if this machine has it.

    Raises:
        MedAIInputError: an unknown name, or a device this machine does not have.
    """
    import torch

    text = str(name).strip().lower() if name is not None else ""
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mpsAvailable() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or _cudaIndexPattern.match(text):
        if not torch.cuda.is_available():
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
            raise MedAIInputError(
                f"Device '{text}' was requested but torch sees no CUDA GPU{hint}; use 'auto' or 'cpu', "
                "or install a CUDA build of PyTorch."
            )
        match = _cudaIndexPattern.match(text)
        if match and int(match.group(1)) >= torch.cuda.device_count():
            raise MedAIInputError(
                f"Device '{text}' does not exist: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                f"numbered from 0."
            )
        return torch.device(text)
    if text == "mps":
        if not _mpsAvailable():
            raise MedAIInputError(
                "Device 'mps' was requested but Apple MPS is not available here; use 'auto' or 'cpu'."
            )
        return torch.device("mps")
    raise MedAIInputError(f"Unknown device {str(name)!r}; choose one of auto, cpu, cuda, cuda:N or mps.")


def describeDevice(device: str | torch.device | None = None) -> str:
    """One line for logs and the GUI, e.g. ``"CUDA GPU 0: NVIDIA H100 (79.1 GiB)"`` or ``"CPU (2 threads)"``.

    Args:
        device: a device or a name accepted by :func:`resolveDevice`; None means ``"auto"``.
    """
    import torch

    device = resolveDevice(device if device is not None else "auto")
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        properties = torch.cuda.get_device_properties(index)
        return f"CUDA GPU {index}: {properties.name} ({properties.total_memory / 2**30:.1f} GiB)"
    if device.type == "mps":
        return "Apple MPS GPU"
    return f"CPU ({torch.get_num_threads()} threads)"


def isOutOfMemoryError(error: BaseException) -> bool:
    """True for a GPU out-of-memory error: ``torch.OutOfMemoryError``, or a RuntimeError saying so (MPS)."""
    import torch

    oomType = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oomType is not None and isinstance(error, oomType):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def _emptyCache(device: torch.device) -> None:
    import torch

    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device.type == "mps" and _mpsAvailable():
        torch.mps.empty_cache()


def runWithDeviceFallback(
    fn: Callable[[torch.device], Any],
    device: str | torch.device = "auto",
    log: Callable[[str], None] | None = None,
) -> Any:
    """Call ``fn(device)``; if a GPU runs out of memory, free its cache and call ``fn`` again on the CPU.

    ``fn`` must move what it needs onto the device it is given, and must not have changed the
    scene before it can fail (the retry starts from the same inputs).

    Args:
        fn: the work, taking the device to run on.
        device: a device or a name accepted by :func:`resolveDevice`.
        log: receives one sentence when falling back (for the GUI's status line or the command line).

    Returns:
        What ``fn`` returned.

    Raises:
        MedAIInputError: ``device`` names a device this machine does not have.
        Exception: whatever ``fn`` raised, except a GPU out-of-memory error on the first try.
    """
    import torch

    device = resolveDevice(device) if not isinstance(device, torch.device) else device
    if device.type == "cpu":
        return fn(device)
    try:
        return fn(device)
    except Exception as error:
        if not isOutOfMemoryError(error):
            raise
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    # Retry outside the except block: the traceback's frames would otherwise keep GPU tensors alive.
    _emptyCache(device)
    if log is not None:
        log(f"{device.type.upper()} ran out of memory ({reason}); running on the CPU instead, which is slower.")
    return fn(torch.device("cpu"))
