"""Numeric precisions on a device: whether they run, whether the hardware has them natively, and conversions.

fp32 is the reference. bf16 is native on x86 CPUs with AVX-512 BF16 or AMX-BF16 (``avx512_bf16``/``amx_bf16`` in
/proc/cpuinfo) and on Arm with the BF16 extension; elsewhere oneDNN emulates it through fp32 and it is usually
slower than fp32. fp16 is native with AVX-512 FP16 or AMX-FP16 (x86) or Arm's half-precision arithmetic;
elsewhere many CPU kernels are missing or slow — the cell then errors with the kernel's message, or runs
slowly with a warning. int8 (static, calibrated) and int8-dynamic (linear layers) are each runtime's own; it is native only
where the CPU has integer SIMD its kernels use (``int8_isa``): fbgemm (PyTorch's x86 engine) needs AVX2 at least
and is fastest with AVX-512 VNNI / AVX-VNNI, as is ONNX Runtime's MLAS; on Arm, qnnpack/MLAS use NEON and the
dot-product extension. That fbgemm is compiled into torch says nothing about the CPU it runs on.
"""

from __future__ import annotations

import copy
import functools
import platform
import sys
from dataclasses import dataclass

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Support:
    """Whether ``precision`` can run on a device: ``ok``; ``native`` hardware support; ``note`` says why/how."""

    precision: str
    ok: bool
    native: bool
    note: str = ""
    isa: str = ""  # the instruction set the decision rests on, e.g. "avx512_vnni (/proc/cpuinfo)" (int8 on a CPU)


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (x86 "flags", Arm "Features"); empty where unreadable."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def torch_cpu_capability() -> str:
    """torch's own probe of the CPU's vector ISA ("DEFAULT", "NO AVX", "AVX2", "AVX512", "SVE256", ...); "" if absent."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - an old torch without the probe: the flags alone decide
        return ""


def machine_arch() -> str:
    return platform.machine().lower()


@dataclass(frozen=True)
class Int8Isa:
    """The integer SIMD this CPU offers int8 kernels: ``level`` "vnni", "avx2", "dotprod", "neon", "none" or
    "unknown"; ``native``: int8 arithmetic in hardware; ``found``: what was read, for the record."""

    level: str
    native: bool
    found: str


_VNNI = ("amx_int8", "avx512_vnni", "avx_vnni")


def int8_isa(flags: frozenset[str] | None = None, arch: str | None = None, capability: str | None = None) -> Int8Isa:
    """What int8 kernels can use here, from /proc/cpuinfo (fbgemm and MLAS read cpuid themselves, so the flags are
    what they see), else torch's capability probe. Arguments default to this machine's; tests pass their own."""
    flags = cpu_flags() if flags is None else flags
    arch = machine_arch() if arch is None else arch
    capability = torch_cpu_capability() if capability is None else capability
    cap = f"; torch CPU capability {capability}" if capability else ""
    if arch in ("aarch64", "arm64"):
        if "asimddp" in flags:
            return Int8Isa("dotprod", True, f"asimddp (Arm dot product) in /proc/cpuinfo{cap}")
        if "asimd" in flags:
            return Int8Isa("neon", True, f"asimd (NEON) in /proc/cpuinfo, no asimddp{cap}")
        if not flags and sys.platform == "darwin":  # every Apple silicon core has NEON with dot product
            return Int8Isa("dotprod", True, "Apple silicon (NEON with dot product)")
        if flags:
            return Int8Isa("none", False, f"neither asimd nor asimddp in /proc/cpuinfo{cap}")
        return Int8Isa("unknown", False, f"no /proc/cpuinfo flags on {arch}{cap}")
    if arch in ("x86_64", "amd64", "i386", "i686", "x86"):
        if flags:
            vnni = [f for f in _VNNI if f in flags]
            if vnni:
                return Int8Isa("vnni", True, f"{vnni[0]} in /proc/cpuinfo{cap}")
            if "avx2" in flags:
                return Int8Isa("avx2", True, f"avx2 in /proc/cpuinfo, no VNNI{cap}")
            return Int8Isa("none", False, f"no avx2 in /proc/cpuinfo{cap}")
        # no flags (not Linux): torch's probe is the best there is; AVX512 there does not imply VNNI
        if capability in ("AVX2", "AVX512"):
            return Int8Isa("avx2", True, f"torch CPU capability {capability} (no /proc/cpuinfo)")
        if capability:
            return Int8Isa("none", False, f"torch CPU capability {capability}: no AVX2 (no /proc/cpuinfo)")
        return Int8Isa("unknown", False, "no /proc/cpuinfo flags and no torch CPU capability")
    return Int8Isa("unknown", False, f"{arch}: no int8 SIMD known to dnnbench{cap}")


def support(precision: str, device: str = "cpu", flags: frozenset[str] | None = None) -> Support:
    """Can ``precision`` run on ``device``, natively or not? Never raises."""
    if precision == "fp32":
        return Support(precision, True, True)
    if device.startswith("cuda"):
        if precision == "bf16":
            if not torch.cuda.is_available():
                return Support(precision, False, False, "CUDA is not available here: no GPU to run bfloat16 on")
            # torch's default counts emulation (a bf16 tensor can be made, compute capability < 8.0) as support
            try:
                native = torch.cuda.is_bf16_supported(including_emulation=False)
            except TypeError:  # torch < 2.3: no emulation counted, one answer
                native = torch.cuda.is_bf16_supported()
            runs = native or torch.cuda.is_bf16_supported()
            return Support(precision, runs, native, "" if native else
                           "emulated: this GPU has no native bfloat16 arithmetic (compute capability < 8.0)" if runs
                           else "this GPU cannot run bfloat16")
        if precision == "fp16":
            return Support(precision, True, True)
        return Support(precision, True, False, "int8 on CUDA: only onnxruntime quantized graphs; PyTorch dynamic "
                                               "quantization runs on the CPU only")
    flags = cpu_flags() if flags is None else flags
    arch = machine_arch()
    if precision == "bf16":
        native = bool({"avx512_bf16", "amx_bf16"} & flags) or (arch in ("aarch64", "arm64") and "bf16" in flags)
        note = "" if native else ("this CPU has no native bfloat16 arithmetic (no avx512_bf16 or amx_bf16 in "
                                  "/proc/cpuinfo): bf16 is emulated through fp32 and usually slower than fp32")
        return Support(precision, True, native, note)
    if precision == "fp16":
        native = bool({"avx512_fp16", "amx_fp16"} & flags) or (arch in ("aarch64", "arm64") and "asimdhp" in flags)
        note = "" if native else ("this CPU has no native fp16 arithmetic (no avx512_fp16 or amx_fp16): fp16 runs only "
                                  "where PyTorch/ONNX Runtime have fp16 CPU kernels, through conversions, usually far "
                                  "slower than fp32; a missing kernel fails the cell with its message")
        return Support(precision, True, native, note)
    if precision in ("int8", "int8-dynamic"):
        # Compiled-in engines (fbgemm, qnnpack are in every x86 build) say nothing about this CPU: its ISA decides.
        isa = int8_isa(flags, arch)
        if isa.level == "avx2":
            note = ("AVX2 without VNNI: each int8 dot product takes three instructions (vpmaddubsw/vpmaddwd/vpaddd) "
                    "where AVX-512 VNNI / AVX-VNNI take one")
        elif isa.level == "neon":
            note = "NEON without the dot-product extension (asimddp): int8 products widen to 16 bits first"
        elif isa.level == "none":
            note = (f"this CPU has no integer SIMD that int8 kernels use ({isa.found}): fbgemm needs AVX2 at least, so "
                    "int8 runs through fallback kernels, usually slower than fp32, or fails the cell with "
                    "'Your CPU does not support FBGEMM'")
        elif isa.level == "unknown":
            note = f"whether this CPU has int8 SIMD is unknown ({isa.found}): int8 is not counted as native"
        else:
            note = ""
        return Support(precision, True, isa.native, note, isa.found)
    return Support(precision, False, False, f"unknown precision {precision!r}")


def cast_inputs(args, kwargs, precision: str):
    """Floating inputs in the precision's dtype (fp16/bf16); integer inputs (token ids) and int8/fp32 unchanged."""
    dtype = DTYPES.get(precision)
    if dtype is None or dtype == torch.float32:
        return args, kwargs

    from torch.utils._pytree import tree_map

    def cast(t):
        return t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t

    return tree_map(cast, (tuple(args), dict(kwargs)))  # inside lists too (a detector's list of images)


def convert_module(module: torch.nn.Module, precision: str, owns_module: bool) -> tuple[torch.nn.Module, dict, list[str]]:
    """The module in ``precision`` for eager/compiled PyTorch: (module, details, notes).

    fp16/bf16: parameters and buffers cast (in place when the cell owns the module, else on a copy).
    int8-dynamic: ``torch.ao.quantization.quantize_dynamic`` on ``nn.Linear`` (weights int8, activations quantized per
    batch at run time); convolutions and every other layer stay fp32.
    """
    if precision == "fp32":
        return module, {}, []
    if precision in ("fp16", "bf16"):
        m = module if owns_module else copy.deepcopy(module)
        return m.to(DTYPES[precision]), {"conversion": f"module.to({DTYPES[precision]})"}, []
    if precision == "int8-dynamic":
        import warnings

        from dnnbench.core.errors import UnavailableError

        dev = next((p.device for p in module.parameters()), torch.device("cpu"))
        if dev.type != "cpu":
            raise UnavailableError("--precision int8-dynamic with PyTorch runs on the CPU only",
                                   "torch.ao dynamic quantization has no CUDA kernels",
                                   "use --runtime onnxruntime --precision int8-dynamic, or --device cpu")
        linear = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
        total = sum(p.numel() for p in module.parameters()) or 1
        quantized = sum(m.weight.numel() for m in linear)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice (moving to torchao)
            q = torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)
        details = {"conversion": "torch.ao.quantization.quantize_dynamic({nn.Linear}, qint8)",
                   "quantized_layers": len(linear), "quantized_params_fraction": quantized / total}
        notes = [f"int8-dynamic: dynamic quantization of the {len(linear)} nn.Linear layers ({100 * quantized / total:.1f} % "
                 "of the parameters); convolutions and all other layers stay fp32"]
        return q, details, notes
    raise ValueError(precision)
