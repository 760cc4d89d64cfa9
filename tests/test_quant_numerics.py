"""quant.numerics: training gives the same bits whatever kernels the CPU offers.

The CPU's vector ISA is emulated here by the variables that cap each library's dispatch (what an
older CPU would choose on its own): ATen's ``ATEN_CPU_CAPABILITY``, MKL's ``MKL_ENABLE_INSTRUCTIONS``
and oneDNN's ``ONEDNN_MAX_CPU_ISA``. A portable run must not see them; a native run must (the control
that shows the check can fail). Those caps leave some choices to the CPU, so one test also trains under
``qemu-x86_64 -cpu EPYC-Rome``: an AMD processor without AVX-512, as its CPUID tells every library
(``apt-get install qemu-user``; .ci/run installs it; SPIKEFORGE_SKIP_QEMU=1 skips that test).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OLD_CPU = {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"}
# a conv layer (oneDNN's path when native), max-pool and a dense layer (MKL's GEMM); one short epoch
TRAIN = ["--dataset", "digits", "--arch", "4c3-mp2-10", "--coding", "rate", "--T", "4", "--limit", "96",
         "--epochs", "1", "--no-float-ref", "--quiet"]


def _train(out: Path, *flags: str, env: dict | None = None, prefix: tuple = ()) -> tuple[str, dict]:
    """Train; return a digest of the float weights the checkpoint holds and the run's cpu_numerics."""
    import torch
    e = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    r = subprocess.run([*prefix, sys.executable, "-m", "quant.train", *TRAIN, *flags, "--out", str(out)], env=e,
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    state = torch.load(out.with_name(out.stem + ".ckpt.pt"), weights_only=False)["quant_net"]
    h = hashlib.sha256()
    for k, v in sorted(state.items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest(), json.loads(out.with_suffix(".json").read_text())["cpu_numerics"]


def test_portable_training_gives_the_same_weights_on_an_older_cpus_kernels(tmp_path):
    _need_avx2()
    here, num = _train(tmp_path / "a.npz")
    old, num_old = _train(tmp_path / "b.npz", env=OLD_CPU)
    assert num == num_old == {"cpu_capability": "AVX2", "mkl_branch": "compatible", "onednn": False,
                              "nnpack": False, "portable": True}
    assert here == old


def _need_avx2():
    import torch
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("this CPU has no AVX2: no portable kernels, and native and emulated kernels are the same")


def test_native_training_follows_the_cpus_kernels(tmp_path):
    _need_avx2()
    here, num = _train(tmp_path / "a.npz", "--native-cpu")
    old, num_old = _train(tmp_path / "b.npz", "--native-cpu", env=OLD_CPU)
    assert num["portable"] is False and num["onednn"] is True and num["mkl_branch"] == "off" and num["nnpack"]
    assert num["cpu_capability"] != "DEFAULT" and num_old["cpu_capability"] == "DEFAULT"
    assert here != old          # the control: the digest sees the kernels' rounding


def _need_qemu():
    if platform.machine() != "x86_64":
        pytest.skip("qemu-x86_64 emulates an x86-64 CPU for x86-64 programs")
    if shutil.which("qemu-x86_64") is None:
        if os.environ.get("SPIKEFORGE_SKIP_QEMU") == "1":
            pytest.skip("qemu-x86_64 not installed and SPIKEFORGE_SKIP_QEMU=1")
        pytest.fail("qemu-x86_64 is not installed: `sudo apt-get install qemu-user` (Debian/Ubuntu), or set "
                    "SPIKEFORGE_SKIP_QEMU=1 to skip this test", pytrace=False)


def test_a_cpu_without_avx2_is_told_its_weights_are_not_portable():
    _need_qemu()
    r = subprocess.run(["qemu-x86_64", "-cpu", "Westmere", sys.executable, "-c",
                        "from quant.numerics import pin_portable_cpu, cpu_numerics\n"
                        "print(pin_portable_cpu()); print(cpu_numerics())"],
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    why, num = r.stdout.strip().split("\n")
    assert why == "this CPU has no AVX2, so the weights depend on the kind of CPU"
    assert "'cpu_capability': 'DEFAULT'" in num and "'portable': False" in num


def test_portable_training_gives_the_same_weights_on_an_amd_cpu_under_qemu(tmp_path):
    """The check that found MKL VML's square root (Adam's step, the BN fold) and atan: the capped
    libraries above agreed, the emulated AMD CPU did not, by one unit in the last place in a few weights."""
    _need_avx2()
    _need_qemu()
    here, num = _train(tmp_path / "a.npz", "--bn")
    amd, num_amd = _train(tmp_path / "b.npz", "--bn", prefix=("qemu-x86_64", "-cpu", "EPYC-Rome"))
    assert num == num_amd and num["portable"]
    assert here == amd


def _py(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_pinning_after_the_first_kernel_is_reported_not_portable():
    out = _py("import torch; a = torch.ones(8, 8); (a @ a).exp()\n"
              "from quant.numerics import pin_portable_cpu, cpu_numerics\n"
              "print(pin_portable_cpu(), cpu_numerics()['mkl_branch'], cpu_numerics()['portable'])")
    assert out == ("torch ran kernels in this process before the CPU-independent ones could be chosen; these "
                   "weights depend on the kind of CPU off False")


def test_an_in_process_run_after_torch_kernels_warns(tmp_path, capsys):
    """The CLI's main() called where torch already ran (this test process) cannot pin the kernels: it
    says so on stderr, and the metrics record the native kernels."""
    import torch
    from quant import train as qtrain
    torch.ones(4, 4) @ torch.ones(4, 4)
    out = tmp_path / "m.npz"
    assert qtrain.main([*TRAIN, "--out", str(out)]) == 0
    assert "warning: torch ran kernels in this process before the CPU-independent" in capsys.readouterr().err
    num = json.loads(out.with_suffix(".json").read_text())["cpu_numerics"]
    assert num["portable"] is False and num["onednn"] is False and num["nnpack"] is False


def test_pinning_restores_the_environment_and_the_onednn_flag():
    _need_avx2()
    out = _py("import os, torch\n"
              "from quant.numerics import pin_portable_cpu, portable_cpu_flags, cpu_numerics\n"
              "ok = pin_portable_cpu(); d = cpu_numerics()\n"
              "print(ok, 'ATEN_CPU_CAPABILITY' in os.environ, d['cpu_capability'], d['mkl_branch'])\n"
              "with portable_cpu_flags(): print(cpu_numerics()['portable'])\n"
              "with portable_cpu_flags(False): print(cpu_numerics()['onednn'])\n"
              "print(torch.backends.mkldnn.enabled)")
    assert out.split("\n") == ["None False AVX2 compatible", "True", "True", "True"]
