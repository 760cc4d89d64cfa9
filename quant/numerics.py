"""Portable CPU numerics: the same trained bits on every x86-64 CPU with AVX2.

Training is deterministic on one machine (fixed seeds, ``torch.use_deterministic_algorithms``, one
thread), yet the same command trained different models on different CPUs: PyTorch picks its kernels
by the CPU it runs on. ATen's vectorised loops (AVX2 or AVX-512), MKL's GEMM branch and oneDNN's JIT
convolutions each add in their own order, so the float weights differ in the last bits and, after
quantization, a few integers differ. README's demo figures (rendered on one machine, checked on a
fresh demo by CI on another) drifted by 0.1 cycle that way.

:func:`pin_portable_cpu` selects the paths whose arithmetic does not depend on the CPU, before torch
runs its first kernel:

- ATen's ``AVX2`` kernels, through ``ATEN_CPU_CAPABILITY``, which ATen reads once. AVX-512 loops
  add 16 lanes where AVX2 adds 8; the scalar ``DEFAULT`` loops would also be portable, but make conv
  training 2.8x slower instead of 1.8x. A CPU without AVX2 (before 2013) cannot run them: training
  says so and records it;
- MKL's conditional numerical reproducibility in its ``COMPATIBLE`` branch (``mkl_cbwr_set``). Its
  ``AVX2`` branch is faster but MKL refuses it on AMD processors (seen under ``qemu-x86_64 -cpu
  EPYC-Rome``: ``mkl_cbwr_set`` returns -3), and one result on Intel and AMD is the point;
- no oneDNN and no NNPACK: convolutions go through ATen's im2col and MKL's GEMM
  (:func:`portable_cpu_flags`). NNPACK would also round: its 3x3 convolutions are Winograd's.

One more library cannot be switched off here: ATen computes ``sqrt`` and ``atan`` of float tensors with
MKL VML, whose last bit depends on the CPU even in the COMPATIBLE branch. Training avoids it instead:
Adam runs fused (an exact vector square root) and the BN fold uses ``rsqrt`` (quant.trainer, quant.qnet).

The price is time: conv training takes about 1.8x the native time (dense nets about the same). ``quant.train
--native-cpu`` keeps the native kernels (faster, reproducible only on the same kind of CPU).
Hand-rolled because nothing in torch sets these together: ``torch.use_deterministic_algorithms``
promises the same result on the same hardware only.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from pathlib import Path

ATEN_ENV = "ATEN_CPU_CAPABILITY"
ATEN_PORTABLE = "AVX2"
# mkl_service.h: the query selector and the branch codes of mkl_cbwr_get / mkl_cbwr_set
MKL_CBWR_BRANCH = 1
MKL_BRANCHES = {1: "off", 2: "auto", 3: "compatible", 4: "sse2", 6: "ssse3", 7: "sse4_1", 8: "sse4_2", 9: "avx",
                10: "avx2", 11: "avx512_mic", 12: "avx512", 13: "avx512_mic_e1", 14: "avx512_e1"}
MKL_CBWR_COMPATIBLE = 3


@functools.cache
def _mkl():
    """MKL's service library inside torch's CPU library (statically linked in the x86-64 wheels), or None
    (a build without MKL: aarch64, or a source build on OpenBLAS)."""
    import torch
    lib = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    try:
        dll = ctypes.CDLL(str(lib))
        return dll if hasattr(dll, "mkl_serv_cbwr_get") and hasattr(dll, "mkl_serv_cbwr_set") else None
    except OSError:
        return None


def pin_portable_cpu() -> str | None:
    """Select the CPU-independent kernels for the rest of this process: None when ATen and MKL took
    them, else why not (one line).

    Call it before torch's first kernel: ATen fixes its capability, and MKL its branch, at their first
    use, and a later call leaves them as they are. The process's environment is restored afterwards,
    so the programs it starts run natively. The convolution flags are :func:`portable_cpu_flags`'.
    """
    import platform

    import torch
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"the CPU-independent kernels are x86-64's (AVX2); on {platform.machine()} the weights depend " \
               f"on the kind of CPU"
    if not _has_avx2():  # asked for AVX2 anyway, ATen would run it and die of an illegal instruction
        return "this CPU has no AVX2, so the weights depend on the kind of CPU"
    saved = os.environ.get(ATEN_ENV)
    os.environ[ATEN_ENV] = ATEN_PORTABLE.lower()
    try:
        torch.backends.cpu.get_cpu_capability()        # ATen reads the variable here, once
    finally:
        if saved is None:
            del os.environ[ATEN_ENV]
        else:
            os.environ[ATEN_ENV] = saved
    mkl = _mkl()
    if mkl is not None:
        mkl.mkl_serv_cbwr_set(MKL_CBWR_COMPATIBLE)    # refused (-8) once MKL has run
    if not _aten_and_mkl_pinned(cpu_numerics()):
        return "torch ran kernels in this process before the CPU-independent ones could be chosen; these " \
               "weights depend on the kind of CPU"
    return None


def _has_avx2() -> bool:
    """Whether the CPU runs ATen's AVX2 kernels (cpuinfo's answer, which fixes nothing in ATen)."""
    import torch
    return bool(torch.cpu._is_avx2_supported())


def _aten_and_mkl_pinned(num: dict) -> bool:
    return num["cpu_capability"] == ATEN_PORTABLE and num["mkl_branch"] in (None, "compatible")


def cpu_numerics() -> dict:
    """Which CPU kernels this process trains with: ATen's capability, MKL's reproducibility branch (None
    without MKL) and whether oneDNN and NNPACK convolutions are on; ``portable`` when all four are the
    CPU-independent choices (:func:`pin_portable_cpu` and :func:`portable_cpu_flags`)."""
    import torch
    cap = torch.backends.cpu.get_cpu_capability()
    mkl = _mkl()
    branch = None if mkl is None else MKL_BRANCHES.get(mkl.mkl_serv_cbwr_get(MKL_CBWR_BRANCH), "unknown")
    onednn = bool(torch.backends.mkldnn.enabled)
    nnpack = bool(torch._C._get_nnpack_enabled())
    num = {"cpu_capability": cap, "mkl_branch": branch, "onednn": onednn, "nnpack": nnpack}
    return {**num, "portable": _aten_and_mkl_pinned(num) and not onednn and not nnpack}


@contextlib.contextmanager
def portable_cpu_flags(enabled: bool = True):
    """Within: convolutions without oneDNN or NNPACK (ATen's im2col and GEMM), when ``enabled``; the
    flags are restored after. (``torch.backends.mkldnn.flags`` would also reset oneDNN's TF32 setting,
    with a warning on every CPU-only build.)"""
    import torch
    was = torch.backends.mkldnn.enabled, torch._C._get_nnpack_enabled()
    if enabled:
        torch.backends.mkldnn.enabled = False
        torch._C._set_nnpack_enabled(False)
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = was[0]
        torch._C._set_nnpack_enabled(was[1])
