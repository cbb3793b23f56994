"""torch.compile (Inductor): compiled in the cell's first call, which is its cold start.

Each cell compiles into a fresh, empty Inductor cache directory, so ``cold_start_s`` is a full compile every
time, whatever earlier runs left in the default cache (a warm cache would make the same cell's cold start
vary between runs). On the CPU Inductor generates C++ and needs a C++ compiler; on CUDA it needs Triton.

Static int8 is not offered: PyTorch's documented path for it under torch.compile is PT2E (torch.export, then
torchao's ``prepare_pt2e``/``convert_pt2e`` with ``X86InductorQuantizer``, compiled with Inductor freezing), which
needs torchao (not a dnnbench extra) and is not wired in; ``NO_STATIC_INT8`` says so to the user.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import torch

from dnnbench.core.record import CellWarning
from dnnbench.runtimes.base import (Availability, Context, Prepared, Runtime, eager_outputs, flat_outputs,
                                            register, state_dict_artifact)
from dnnbench.runtimes.eager import int8_note, state_dict_saver, torch_only, torch_runner, unsupported_torch
from dnnbench.runtimes.precision import cast_inputs, convert_module

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def cxx_compiler() -> str | None:
    """The C++ compiler Inductor would use ($CXX, else g++, c++, clang++ on PATH), or None."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _vec_isa() -> str:
    """The SIMD instruction set Inductor generates CPU code for ("none": scalar), or "unknown"."""
    try:
        from torch._inductor import cpu_vec_isa

        isa = cpu_vec_isa.pick_vec_isa()
        return str(isa) if isa else "none"
    except Exception:
        return "unknown"


NO_STATIC_INT8 = ("compile does not run static int8: PyTorch's path for it (PT2E: torch.export, torchao "
                  "X86InductorQuantizer, Inductor freezing) needs torchao and is not supported by dnnbench yet; use "
                  "--runtime eager or onnxruntime for int8, or --precision int8-dynamic")


@register
class Compiled(Runtime):
    name = "compile"
    description = "torch.compile (Inductor), compiled in the first call"

    def availability(self, device: str = "cpu") -> Availability:
        try:
            import torch._dynamo as dynamo

            supported = dynamo.is_dynamo_supported()
        except Exception as exc:
            return Availability(self.name, False, f"torch.compile cannot be imported ({type(exc).__name__}: {exc})",
                                "install a torch build with torch.compile (2.0 or later)")
        if not supported:
            return Availability(self.name, False, "torch.compile does not support this Python version",
                                "use a Python version torch.compile supports")
        if device.startswith("cuda"):
            try:
                import triton  # noqa: F401
            except ImportError:
                return Availability(self.name, False, "Inductor needs Triton on CUDA and it is not installed",
                                    "pip install triton (it comes with CUDA builds of torch)")
            return Availability(self.name, True, details={"backend": "inductor"})
        cxx = cxx_compiler()
        if cxx is None:
            return Availability(self.name, False, "Inductor generates C++ on the CPU and no C++ compiler was found "
                                "($CXX, g++, c++, clang++)", "install one, e.g. apt-get install g++")
        return Availability(self.name, True, details={"backend": "inductor", "cxx": cxx})

    def unsupported(self, precision: str, device: str) -> str | None:
        if precision == "int8":
            return NO_STATIC_INT8
        return super().unsupported(precision, device) or unsupported_torch(precision, device)

    def import_libraries(self) -> None:
        import torch._dynamo  # noqa: F401
        import torch._inductor.compile_fx  # noqa: F401  (seconds of imports: the tool's, not the model's)

    def prepare(self, ctx: Context) -> Prepared:
        torch_only(ctx)
        import torch._dynamo

        reference = eager_outputs(ctx.module, ctx.args, ctx.kwargs)
        module, details, notes = convert_module(ctx.module, ctx.precision, ctx.owns_module)
        args, kwargs = cast_inputs(ctx.args, ctx.kwargs, ctx.precision)
        cache = tempfile.mkdtemp(prefix="dnnbench-inductor-")
        old = os.environ.get(CACHE_ENV)
        os.environ[CACHE_ENV] = cache

        def cleanup():
            if old is None:
                os.environ.pop(CACHE_ENV, None)
            else:
                os.environ[CACHE_ENV] = old
            shutil.rmtree(cache, ignore_errors=True)

        from torch._dynamo.utils import counters

        try:
            torch._dynamo.reset()  # nothing compiled earlier in this process is reused
            counters.clear()
            compiled = torch.compile(module, dynamic=False)
            with torch.inference_mode():
                t0 = time.perf_counter()
                compiled(*args, **kwargs)  # compiles: the cold start
                first = time.perf_counter() - t0
        except Exception:
            cleanup()
            raise

        def call():
            return compiled(*args, **kwargs)

        def outputs():
            return [t.float() if t.is_floating_point() else t for t in flat_outputs(call())]

        graphs = int(counters["stats"].get("unique_graphs", 0))
        breaks = sum(counters["graph_break"].values())
        details.update({"backend": "inductor", "mode": "default", "dynamic": False, "graphs": graphs,
                        "graph_breaks": breaks, "inductor_cache": "fresh per cell (cold start = full compile)"})
        notes = notes + [f"torch.compile: the first call compiled {graphs} graph{'s' if graphs != 1 else ''} in "
                         f"{first:.1f} s (the cell's cold start)"
                         + (f", with {breaks} graph break{'s' if breaks != 1 else ''}" if breaks else "")]
        warns = []
        if ctx.device.type == "cpu":
            isa = _vec_isa()
            details["vec_isa"] = isa
            from dnnbench.runtimes.precision import cpu_flags

            if isa == "none" and {"avx2", "avx512f", "asimd"} & cpu_flags():
                warns.append(CellWarning(
                    "compile", "Inductor generated scalar C++: its SIMD probe (compile and load a test library) "
                               "failed in this process although the CPU has " +
                               "/".join(sorted({"avx2", "avx512f", "asimd"} & cpu_flags())),
                    "run again; a probe that timed out under load makes the compiled code many times slower"))
        if graphs == 0:
            reason = next(iter(counters["graph_break"]), "no graph was captured").strip().splitlines()[0]
            warns.append(CellWarning("compile", "torch.compile compiled nothing: the model runs eagerly under "
                                                 f"dynamo's frame evaluation ({reason[:160]})",
                                      "this figure is eager PyTorch plus dynamo's overhead, not compiled code; "
                                      "use --runtime eager for this model (e.g. int8 dynamic quantization does "
                                      "not compile)"))
        return Prepared(call, outputs, self.name, ctx.precision, reference=reference, first_call_s=first,
                        restart_peak=True, details=details, notes=notes, warnings=warns, cleanups=[cleanup],
                        artifact=state_dict_artifact(module, ctx.precision, int8_note(ctx.precision) + (
                            "; torch.compile writes no deployable file of its own: an app ships this state dict "
                            "and compiles again when it loads it")),
                        save=state_dict_saver(module, ctx.precision), run=torch_runner(compiled, ctx))
