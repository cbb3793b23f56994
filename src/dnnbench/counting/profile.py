"""Static profile of a loaded model: params, MACs/FLOPs, activation memory. Never times anything."""

from __future__ import annotations

import torch

from dnnbench.core.errors import InputError
from dnnbench.core.records import LayerRow, OpTotal, Profile
from dnnbench.core.specs import InputSpec, LoadedModel
from dnnbench.counting.counter import OpCounter, _storage_key

META_HINTS = ("meta", "data-dependent", "item()", "Cannot copy out", "NotImplemented", "is_nonzero")


def _is_meta_limitation(exc: BaseException) -> bool:
    msg = f"{type(exc).__name__}: {exc}"
    return isinstance(exc, NotImplementedError) or any(h in msg for h in META_HINTS)


def _training_flags(module: torch.nn.Module) -> list[tuple[torch.nn.Module, bool]]:
    return [(m, m.training) for m in module.modules()]


def profile_model(lm: LoadedModel, batch_size: int = 1, inputs: InputSpec | None = None,
                  mode: str = "auto") -> Profile:
    """Count one eval-mode, no-grad forward at ``batch_size``.

    ``mode``: "auto" counts on meta tensors and falls back to real CPU tensors when the model cannot run
    on meta; "meta" or "real" force one. Real counting takes the same fused kernels a deployment takes
    (e.g. MultiheadAttention's fast path) and gives the same MACs. The module is left exactly as it was:
    training flags restored, parameters never moved.
    """
    if getattr(lm.module, "onnx_path", None) is not None:  # an ONNX file: counted from its graph
        from dnnbench.counting.onnx_count import profile_onnx

        return profile_onnx(lm, batch_size, inputs)
    if mode not in ("auto", "meta", "real"):
        raise InputError(f"unknown counting mode {mode!r}", "modes are auto, meta and real", "use mode='auto'")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch size {batch_size} is not allowed", "a batch holds at least one item",
                         "use --batch-size 1 or more")
    spec = inputs or lm.inputs
    module = lm.module
    notes = list(lm.notes)
    flags = _training_flags(module)
    try:
        module.eval()
        try:
            if mode == "real":
                counted = _count(module, spec, batch_size, "cpu")
            else:
                counted, mode = _count(module, spec, batch_size, "meta"), "meta"
        except InputError:
            raise
        except Exception as exc:
            if mode != "auto" or not _is_meta_limitation(exc) or _on_meta(module):
                raise _rejected(lm.ref, spec, batch_size, exc) from exc
            notes.append(f"counted with real CPU tensors: the model cannot run on meta tensors ({_short(exc)})")
            try:
                counted, mode = _count(module, spec, batch_size, "cpu"), "real"
            except Exception as exc2:
                raise _rejected(lm.ref, spec, batch_size, exc2) from exc2
    finally:
        for m, training in flags:
            m.training = training

    result, output = counted
    params = list(module.parameters())
    buffers = list(module.buffers())
    dtype = params[0].dtype if params else torch.float32
    names = {id(m): n for n, m in module.named_modules()}
    rows = []
    children = {n: any(True for _ in m.children()) for n, m in module.named_modules()}
    for name, m in module.named_modules():
        direct = sum(p.numel() for p in m.parameters(recurse=False))
        stats = result.modules.get(name)
        if stats is None and direct == 0:
            continue
        if stats is None:
            stats_macs = stats_other = stats_out = calls = 0
        else:
            stats_macs, stats_other, stats_out, calls = stats.macs, stats.other_flops, stats.output_bytes, stats.calls
        if children[name] and direct == 0 and stats_macs == 0 and stats_other == 0:
            continue  # a pure container: its work shows on its children
        rows.append(LayerRow(name or "(root)", type(m).__name__, direct, stats_macs, 2 * stats_macs, stats_other,
                             stats_out, calls))
    del names
    ops = sorted(
        (OpTotal(op, s.count, s.macs, 2 * s.macs, s.other_flops) for op, s in result.ops.items()),
        key=lambda o: (-o.macs, -o.other_flops, o.op),
    )
    return Profile(
        model=lm.ref,
        batch_size=batch_size,
        input_shape=spec.shapes(batch_size),
        params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        weight_bytes=sum(p.numel() * p.element_size() for p in params),
        buffer_bytes=sum(b.numel() * b.element_size() for b in buffers),
        macs=result.macs,
        flops=2 * result.macs,
        other_flops=result.other_flops,
        activation_peak_bytes=result.activation_peak_bytes,
        input_bytes=spec.nbytes(batch_size),
        output_bytes=result.output_bytes,
        uncounted_ops=result.uncounted_ops,
        ops=ops,
        layers=rows,
        mode=mode,
        dtype=str(dtype).replace("torch.", ""),
        reported=lm.reported,
        notes=notes,
    )


def _on_meta(module: torch.nn.Module) -> bool:
    return any(t.device.type == "meta" for t in list(module.parameters()) + list(module.buffers()))


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _rejected(ref: str, spec: InputSpec, batch_size: int, exc: BaseException) -> InputError:
    shapes = " and ".join(str(s) for s in spec.shapes(batch_size))
    if ref.startswith("python:"):  # a factory's own example input sets the shape: that is where to look
        fix = ("make the factory's example input one the model accepts (its shape after the batch dimension "
               "is what is counted), or pass an --input-size the model accepts for an image model")
    else:
        fix = "pass an --input-size the model accepts (its weights metadata gives the native size)"
    return InputError(f"{ref} rejected input of shape {shapes}", f"{type(exc).__name__}: {_short(exc)}", fix)


def _count(module: torch.nn.Module, spec: InputSpec, batch_size: int, device: str):
    """Run one counted forward. On meta, parameters are swapped for meta copies via functional_call."""
    names = {id(m): n for n, m in module.named_modules()}
    if device == "meta" and not _on_meta(module):
        state = {n: torch.empty_like(p, device="meta") for n, p in module.named_parameters()}
        state.update({n: torch.empty_like(b, device="meta") for n, b in module.named_buffers()})
        excluded = {k for k in (_storage_key(t) for t in state.values()) if k is not None}
        excluded |= {k for k in (_storage_key(t) for t in module.state_dict(keep_vars=True).values()) if k is not None}
        call = lambda args, kwargs: torch.func.functional_call(module, state, args, kwargs)  # noqa: E731
    else:
        tensors = list(module.parameters()) + list(module.buffers())
        excluded = {k for k in (_storage_key(t) for t in tensors) if k is not None}
        state = None
        call = lambda args, kwargs: module(*args, **kwargs)  # noqa: E731
    args, kwargs = spec.make(batch_size, device)
    counter = OpCounter(names, excluded)
    counter.track_inputs(list(args) + list(kwargs.values()))
    with torch.no_grad(), counter:
        output = call(args, kwargs)
    del args, kwargs
    result = counter.finish(output)
    return result, output
