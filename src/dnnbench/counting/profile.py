"""Static profile of a loaded model: params, MACs/FLOPs, activation memory. Never times anything."""

from __future__ import annotations

import torch
from torch.utils._pytree import tree_flatten

from dnnbench.core.errors import InputError
from dnnbench.core.records import LayerRow, OpTotal, Profile
from dnnbench.core.specs import InputSpec, LoadedModel
from dnnbench.counting.counter import OpCounter, _storage_key, fill_pseudo_random

def _holds_tensor(v) -> bool:
    if isinstance(v, torch.Tensor):
        return True
    if isinstance(v, (list, tuple)):
        return any(isinstance(x, torch.Tensor) for x in v)
    if isinstance(v, dict):
        return any(isinstance(x, torch.Tensor) for x in v.values())
    return False


def _first_is_tensor(v) -> bool:
    if type(v) is list:
        return bool(v) and isinstance(v[0], torch.Tensor)
    if type(v) is dict:
        return bool(v) and isinstance(next(iter(v.values())), torch.Tensor)
    return False


def _snapshot_state(module: torch.nn.Module) -> list:
    """Every submodule's attributes, and the contents of its lists and dicts of tensors.

    A forward on meta tensors can leave meta tensors behind in plain attributes -- torchvision's
    AnchorGenerator moves its ``cell_anchors`` list to the input's device, caches fill with meta
    tensors -- and the model then fails on real tensors ("Cannot copy out of meta tensor").
    """
    snap = []
    for m in module.modules():
        saved = m.__dict__.copy()
        containers = [(v, v.copy()) for v in saved.values() if _first_is_tensor(v)]
        snap.append((m, saved, containers))
    return snap


def _restore_state(snap: list) -> None:
    for m, saved, containers in snap:
        d = m.__dict__
        if d.keys() != saved.keys() or any(d[k] is not v for k, v in saved.items()):
            for k in [k for k in d if k not in saved and _holds_tensor(d[k])]:
                del d[k]  # a tensor attribute the forward added
            d.update(saved)
        for v, content in containers:
            if type(v) is list:
                if len(v) != len(content) or any(a is not b for a, b in zip(v, content)):
                    v[:] = content
            elif v.keys() != content.keys() or any(v[k] is not content[k] for k in v):
                v.clear()
                v.update(content)


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
        if mode == "real":
            try:
                counted = _count_real(module, spec, batch_size, notes)
            except InputError:
                raise
            except Exception as exc:
                raise _rejected(lm.ref, spec, batch_size, exc) from exc
        else:
            try:
                counted, mode = _count(module, spec, batch_size, "meta"), "meta"
            except InputError:
                raise
            except Exception as exc:
                if mode != "auto":
                    raise _rejected(lm.ref, spec, batch_size, exc) from exc
                # Whatever a meta run raised, real tensors decide: a model that fails there too is rejected
                # with the real run's error, which names the actual cause; one that runs is counted.
                reason = _short(exc).split(". ")[0].rstrip(".")  # torch's meta errors run on for lines
                notes.append(f"counted with real CPU tensors: the model cannot run on meta tensors ({reason})")
                try:
                    counted, mode = _count_real(module, spec, batch_size, notes), "real"
                except InputError:
                    raise
                except Exception as exc2:
                    raise _rejected(lm.ref, spec, batch_size, exc2) from exc2
        if mode == "real":
            ran = {op: counted[0].ops[op].count for op in sorted(DATA_DEPENDENT) if op in counted[0].ops}
            if ran:
                notes.append("data-dependent ops ran on this input's values ("
                             + ", ".join(f"{op} x{n}" for op, n in ran.items())
                             + "): the sizes they produce, and the work after them, depend on the input and the "
                             "weights")
    finally:
        for m, training in flags:
            m.training = training

    result, output = counted
    packed = [t for m in module.modules() for t in _packed_weights(m)]
    params = list(module.parameters()) + packed
    buffers = list(module.buffers())
    dtype = params[0].dtype if params else torch.float32
    names = {id(m): n for n, m in module.named_modules()}
    rows = []
    children = {n: any(True for _ in m.children()) for n, m in module.named_modules()}
    for name, m in module.named_modules():
        direct = sum(p.numel() for p in list(m.parameters(recurse=False)) + _packed_weights(m))
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
        trainable_params=sum(p.numel() for p in params if p.requires_grad and p.is_floating_point()),
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


def _packed_weights(m: torch.nn.Module) -> list[torch.Tensor]:
    """Weights a quantized layer keeps packed (int8 weight and float bias), not as parameters."""
    weight_bias = getattr(m, "_weight_bias", None)
    # a quantized Linear and its LinearPackedParams child both unpack the same weights: count the holder of
    # the packed object itself, never a module whose packed params are another module
    if not callable(weight_bias) or isinstance(getattr(m, "_packed_params", None), (torch.nn.Module, type(None))):
        return []
    try:
        return [t for t in weight_bias() if isinstance(t, torch.Tensor)]
    except Exception:  # a packed layer that cannot unpack here: its weights are not counted
        return []


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
    why = f"{type(exc).__name__}: {_short(exc)}"
    if _out_of_memory(exc):  # real tensors of this size do not fit: the size is the cause, say so
        return InputError(f"{ref} needs more memory than this machine has at input {shapes}", why,
                          "pass a smaller --input-size or --batch-size (counting ran on real tensors here, "
                          "because the model cannot run on meta tensors)")
    if not _about_the_input(exc):  # the model's own failure: do not send the user after the input size
        return InputError(f"{ref} failed in its forward on input of shape {shapes}", why,
                          "the error is raised by the model's code: check the model (or report it to its "
                          "authors); a different input size is unlikely to help")
    return InputError(f"{ref} rejected input of shape {shapes}", why, fix)


def _out_of_memory(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return isinstance(exc, MemoryError) or any(w in text for w in ("can't allocate memory", "out of memory",
                                                                     "cannot allocate memory"))


_INPUT_WORDS = ("size", "shape", "dimension", "dim ", "expected", "channel", "mat1", "divisible", "input",
                "elements", "match", "broadcast", "too small", "kernel", "out of range")


def _about_the_input(exc: BaseException) -> bool:
    """Whether an exception reads like a shape or size mismatch (what a wrong input size causes)."""
    text = str(exc).lower()
    return isinstance(exc, (RuntimeError, ValueError, IndexError, AssertionError)) and (
        not text or any(w in text for w in _INPUT_WORDS))


# Ops whose output size depends on tensor values: counted on real tensors, each run is this input's.
DATA_DEPENDENT = frozenset({
    "torchvision.nms", "aten.nonzero", "aten._local_scalar_dense", "aten._unique2", "aten.unique_dim",
    "aten.unique_consecutive", "aten.masked_select", "aten.nonzero_static", "aten.is_nonzero",
})


def _materialize(module: torch.nn.Module) -> torch.nn.Module:
    """A CPU copy of a module built on meta, filled with pseudo-random values.

    Values matter only where a data-dependent op reads them (NMS, thresholds), and random weights are
    arbitrary by nature: weights get small pseudo-random values, buffers an identity (ones for weights,
    variances and scales -- FrozenBatchNorm2d, BatchNorm statistics -- zeros for the rest).
    """
    import copy

    real = copy.deepcopy(module).to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in real.modules():
            for name, t in m.named_parameters(recurse=False):
                fill_pseudo_random(t, gen, -0.05, 0.05) if t.is_floating_point() else t.zero_()
            for name, t in m.named_buffers(recurse=False):
                t.fill_(1) if t.is_floating_point() and name.endswith(("weight", "var", "scale")) else t.zero_()
    return real


SYNTHETIC_NOTE = ("the model has no weights (built on meta), so convolutions and matrix products were not "
                  "computed: their outputs are random values of the exact shape, as the weights would be random")


def _count_real(module: torch.nn.Module, spec: InputSpec, batch_size: int, notes: list[str] | None = None):
    if not _on_meta(module):
        return _count(module, spec, batch_size, "cpu")
    counted = _count(_materialize(module), spec, batch_size, "cpu", synthetic=True)
    if notes is not None:
        notes.append(SYNTHETIC_NOTE)
    return counted


def _count(module: torch.nn.Module, spec: InputSpec, batch_size: int, device: str, synthetic: bool = False):
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
    # real inputs are drawn from a fixed seed: data-dependent paths (NMS...) give the same count every time
    generator = torch.Generator().manual_seed(0) if device != "meta" else None
    args, kwargs = spec.make(batch_size, device, generator=generator)
    counter = OpCounter(names, excluded, torch.Generator().manual_seed(1) if synthetic else None)
    counter.track_inputs(tree_flatten((args, kwargs))[0])  # list inputs (detection) hold their tensors
    snapshot = _snapshot_state(module) if device == "meta" else None
    try:
        with torch.no_grad(), counter:
            output = call(args, kwargs)
    finally:
        if snapshot is not None:  # a meta forward must leave no meta tensors in the model's attributes
            _restore_state(snapshot)
    del args, kwargs
    result = counter.finish(output)
    return result, output
