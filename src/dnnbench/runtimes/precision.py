"""Numeric precisions on a device: whether they run, whether the hardware has them natively, and conversions.

fp32 is the reference. bf16 is native on x86 CPUs with AVX-512 BF16 or AMX-BF16 (``avx512_bf16``/``amx_bf16`` in
/proc/cpuinfo) and on Arm with the BF16 extension; elsewhere oneDNN emulates it through fp32 and it is usually
slower than fp32. fp16 is native with AVX-512 FP16 or AMX-FP16 (x86) or Arm's half-precision arithmetic;
elsewhere many CPU kernels are missing or slow — the cell then errors with the kernel's message, or runs
slowly with a warning. int8 (static, calibrated; PyTorch: FX graph mode, ``quantize_static_fx``) and int8-dynamic
(linear layers) are each runtime's own; it is native only
where the CPU has integer SIMD its kernels use (``int8_isa``): fbgemm (PyTorch's x86 engine) needs AVX2 at least
and is fastest with AVX-512 VNNI / AVX-VNNI, as is ONNX Runtime's MLAS; on Arm, qnnpack/MLAS use NEON and the
dot-product extension. That fbgemm is compiled into torch says nothing about the CPU it runs on.
"""

from __future__ import annotations

import copy
import functools
import math
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
        return Support(precision, True, False, "int8 on CUDA: only onnxruntime quantized graphs; PyTorch's int8 "
                                               "(static and dynamic quantization) runs on the CPU only")
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
        total = sum(p.numel() for p in module.parameters()) or 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice (moving to torchao)
            q = torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)
        # what was swapped, not what might have been: quantize_dynamic maps exact types (a subclass stays fp32)
        swapped = {n for n, m in q.named_modules() if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")}
        linear = [m for n, m in module.named_modules() if isinstance(m, torch.nn.Linear) and n in swapped]
        quantized = sum(m.weight.numel() for m in linear)
        details = {"conversion": "torch.ao.quantization.quantize_dynamic({nn.Linear}, qint8)",
                   "quantized_layers": len(linear), "quantized_params_fraction": quantized / total}
        notes = [f"int8-dynamic: dynamic quantization of the {len(linear)} nn.Linear layers ({100 * quantized / total:.1f} % "
                 "of the parameters); convolutions and all other layers stay fp32"]
        return q, details, notes
    raise ValueError(precision)


# ---- static int8 in PyTorch: FX graph mode post-training quantization ------------------------------------------

_CONV_LINEAR = (torch.nn.modules.conv._ConvNd, torch.nn.Linear)
_QUANTIZED_PACKAGES = ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")


def quantized_backend(arch: str | None = None) -> str:
    """The torch.ao backend static int8 is prepared for: "x86" (fbgemm + onednn) on x86, "qnnpack" on Arm."""
    arch = machine_arch() if arch is None else arch
    return "qnnpack" if arch in ("aarch64", "arm64") else "x86"


def layer_macs(module: torch.nn.Module, args, kwargs) -> dict[str, int]:
    """MACs of every conv and linear module (by qualified name) in one call, from the shapes forward hooks see.

    Conv: output elements x (in_channels / groups) x kernel elements (transposed: input elements x out_channels /
    groups x kernel elements); linear: output elements x in_features. A module called twice counts twice.
    """
    macs: dict[str, int] = {}
    hooks = []

    def hook(name):
        def count(mod, inputs, output):
            if isinstance(mod, torch.nn.Linear):
                n = output.numel() * mod.in_features
            elif isinstance(mod, torch.nn.modules.conv._ConvTransposeNd):
                n = inputs[0].numel() * (mod.out_channels // mod.groups) * math.prod(mod.kernel_size)
            else:
                n = output.numel() * (mod.in_channels // mod.groups) * math.prod(mod.kernel_size)
            macs[name] = macs.get(name, 0) + int(n)
        return count

    for name, mod in module.named_modules():
        if isinstance(mod, _CONV_LINEAR):
            hooks.append(mod.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            module(*args, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    return macs


def quantized_layer_names(converted: torch.fx.GraphModule) -> set[str]:
    """Qualified names of the float model's conv/linear layers that run as int8 kernels in ``converted``.

    A standard layer becomes a quantized module of the same name (a fused conv-bn-relu keeps the conv's); a layer FX
    traced through (a subclass of nn.Linear, say) becomes a call of a ``quantized::`` op on a packed weight named
    after it (``<name with _ for .>_packed_weight_N``).
    """
    import re

    names = set()
    for node in converted.graph.nodes:
        if node.op == "call_module":
            mod = converted.get_submodule(node.target)
            if type(mod).__module__.startswith(_QUANTIZED_PACKAGES):
                names.add(node.target)
        elif node.op == "call_function" and str(node.target).startswith("quantized."):
            for a in node.args:
                if isinstance(a, torch.fx.Node) and a.op == "get_attr":
                    m = re.fullmatch(r"(.+)_packed_weight_\d+", str(a.target))
                    if m:
                        names.add("_flat:" + m.group(1))
    return names


def quantize_static_fx(module: torch.nn.Module, calibration, args, kwargs, owns_module: bool,
                       model: str = "the model") -> tuple[torch.nn.Module, dict, list[str]]:
    """Static int8 of ``module`` (CPU): FX ``prepare_fx`` with the backend's default qconfig mapping (conv-bn-relu
    fused, int8 weights per channel, uint8 activations per tensor, histogram observers), calibrated on
    ``calibration`` ([(args, kwargs)]), then ``convert_fx``: quantized::conv2d / linear kernels. (module, details,
    notes); ModelBuildError when FX cannot trace or run the model."""
    import warnings

    from dnnbench.core.errors import ModelBuildError, UnavailableError

    dev = next((p.device for p in module.parameters()), torch.device("cpu"))
    if dev.type != "cpu":
        raise UnavailableError("--precision int8 with PyTorch runs on the CPU only",
                               "torch.ao static quantization has no CUDA kernels",
                               "use --runtime onnxruntime --precision int8, or --device cpu")
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    backend = quantized_backend()
    if backend not in torch.backends.quantized.supported_engines:
        raise UnavailableError(f"--precision int8: this torch has no {backend} quantized engine",
                               f"its engines are {', '.join(torch.backends.quantized.supported_engines)}",
                               "use --runtime onnxruntime --precision int8")
    torch.backends.quantized.engine = backend
    fix = "use --runtime onnxruntime, openvino or executorch for int8"
    macs = layer_macs(module, args, kwargs)
    m = module if owns_module else copy.deepcopy(module)
    m.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices (moving to torchao)
        try:
            prepared = prepare_fx(m, get_default_qconfig_mapping(backend), example_inputs=tuple(args))
        except Exception as exc:
            raise ModelBuildError(f"torch.fx cannot trace {model} for static int8", _first_line(exc), fix) from exc
        try:
            with torch.no_grad():
                for a, k in calibration or [(args, kwargs)]:
                    prepared(*a, **k)
            q = convert_fx(prepared)
        except Exception as exc:
            raise ModelBuildError(f"static int8 (FX) of {model} failed", _first_line(exc), fix) from exc
    done = quantized_layer_names(q)
    flat = {n[6:] for n in done if n.startswith("_flat:")}
    is_q = {name: name in done or name.replace(".", "_") in flat for name in macs}
    total = sum(macs.values())
    int8 = sum(v for name, v in macs.items() if is_q[name])
    left = [name for name, q_ in is_q.items() if not q_]
    details = {"conversion": "torch.ao.quantization.quantize_fx: prepare_fx -> calibrate -> convert_fx",
               "backend": backend, "qconfig_mapping": f"get_default_qconfig_mapping({backend!r})",
               "quantized_layers": sum(is_q.values()), "int8_macs": int8, "conv_linear_macs": total,
               "int8_macs_fraction": int8 / total if total else
               "unavailable: the model has no conv or linear layer (no MACs to quantize)",
               "calibration_batches": len(calibration or [])}
    if left:
        details["float_layers"] = left[:20]
    share = f"{100 * int8 / total:.1f} %" if total else "none"
    notes = [f"int8: PyTorch FX static quantization for the {backend} engine (conv-bn-relu fused, int8 weights per "
             f"channel, uint8 activations per tensor) calibrated on {len(calibration or [])} batches; {share} of the "
             "conv/linear MACs run in int8 kernels" + (f"; {len(left)} conv/linear layers stay fp32" if left else "")]
    return q, details, notes


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}"[:300]
