"""Device choice and the CPU fallback on GPU out-of-memory, with real torch devices and errors."""

from __future__ import annotations

import pytest
import torch

from MedAICommonLib.devices import describeDevice, isOutOfMemoryError, resolveDevice, runWithDeviceFallback
from MedAICommonLib.errors import MedAIInputError


def mpsAvailable() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def test_auto_prefers_cuda_then_mps_then_cpu():
    expected = "cuda" if torch.cuda.is_available() else "mps" if mpsAvailable() else "cpu"
    assert resolveDevice("auto").type == expected
    assert resolveDevice().type == expected
    assert resolveDevice("  AUTO ").type == expected


def test_cpu_is_always_there_and_tensors_run_on_it():
    device = resolveDevice("cpu")
    assert device == torch.device("cpu")
    assert (torch.ones(3, device=device) * 2).sum().item() == 6.0
    assert resolveDevice(torch.device("cpu")) == device
    assert describeDevice("cpu").startswith("CPU (")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "CUDA"])
def test_cuda_requested_without_a_gpu_is_refused_clearly(name):
    with pytest.raises(MedAIInputError, match=r"requested but torch sees no CUDA GPU.*'auto' or 'cpu'"):
        resolveDevice(name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_index_beyond_the_gpus_is_refused():
    with pytest.raises(MedAIInputError, match="does not exist"):
        resolveDevice(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.skipif(mpsAvailable(), reason="this machine has Apple MPS")
def test_mps_requested_without_it_is_refused_clearly():
    with pytest.raises(MedAIInputError, match="Apple MPS is not available"):
        resolveDevice("mps")


@pytest.mark.parametrize("name", ["gpu", "", "cuda:x", "tpu", "cpu:0 "])
def test_unknown_device_names_are_refused(name):
    with pytest.raises(MedAIInputError, match="Unknown device .*auto, cpu, cuda, cuda:N or mps"):
        resolveDevice(name)


def test_out_of_memory_errors_are_recognised():
    assert isOutOfMemoryError(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert isOutOfMemoryError(RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)"))
    assert not isOutOfMemoryError(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not isOutOfMemoryError(MemoryError())


def makeGpuHungryWork():
    """Real work that a too-small GPU refuses: it raises torch's OutOfMemoryError on any non-CPU device."""
    calls = []

    def work(device):
        calls.append(device)
        if device.type != "cpu":
            raise torch.OutOfMemoryError(f"{device.type.upper()} out of memory. Tried to allocate 20.00 GiB")
        image = torch.arange(24, dtype=torch.float32, device=device).reshape(2, 3, 4)
        return torch.nn.functional.avg_pool1d(image, 2).sum().item()

    return work, calls


@pytest.mark.parametrize("gpu", [torch.device("cuda"), torch.device("cuda", 0), torch.device("mps")])
def test_out_of_memory_falls_back_to_cpu_with_a_message(gpu):
    work, calls = makeGpuHungryWork()
    messages = []
    result = runWithDeviceFallback(work, gpu, log=messages.append)
    expected = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4).reshape(2, 3, 2, 2).mean(-1).sum().item()
    assert result == pytest.approx(expected)
    assert [device.type for device in calls] == [gpu.type, "cpu"]
    assert len(messages) == 1
    assert messages[0].startswith(f"{gpu.type.upper()} ran out of memory") and "CPU" in messages[0]


def test_fallback_without_log_still_retries():
    work, calls = makeGpuHungryWork()
    assert runWithDeviceFallback(work, torch.device("cuda")) is not None
    assert [device.type for device in calls] == ["cuda", "cpu"]


def test_other_errors_are_not_hidden_by_the_fallback():
    calls = []

    def broken(device):
        calls.append(device)
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)")

    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        runWithDeviceFallback(broken, torch.device("cuda"))
    assert len(calls) == 1


def test_out_of_memory_on_cpu_is_not_retried():
    calls = []

    def hungry(device):
        calls.append(device)
        raise torch.OutOfMemoryError("out of memory")

    with pytest.raises(torch.OutOfMemoryError):
        runWithDeviceFallback(hungry, "cpu")
    assert len(calls) == 1


def test_fallback_refuses_a_bad_device_name_before_running():
    calls = []
    with pytest.raises(MedAIInputError, match="Unknown device"):
        runWithDeviceFallback(calls.append, "gpu0")
    assert calls == []
