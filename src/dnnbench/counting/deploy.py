"""The deploy form of a model: what an inference runtime executes, not what was trained.

Two rewrites, in this order, on a copy (``to_deploy``) or in place (``deploy_inplace``):

1. **Re-parameterisation.** Every submodule with a ``fuse()`` method is replaced by what it returns; one with
   ``reparameterize()`` or ``switch_to_deploy()`` calls it. That is the walk of timm's
   ``timm.utils.model.reparameterize_model`` (RepVGG, MobileOne, FastViT, RepViT, RepGhost, EfficientViT,
   LeViT...), done here so that any model's own methods are used and each call is counted.
2. **BatchNorm folding.** An eval-mode BatchNorm whose input is the output of a ``Conv1d/2d/3d`` or ``Linear``
   module -- seen in one forward on meta tensors, the conv called once and its output read by nothing but
   that BatchNorm -- is folded into it (``torch.nn.utils.fusion``): the conv gains the scale and a bias, the
   BatchNorm becomes ``Identity`` (timm's ``BatchNormAct2d`` keeps its dropout and activation). A BatchNorm
   whose producer is not such a module (pre-activation nets: BN before conv) stays, and is counted as left.

The report keeps the params as built, after step 1 and after both: timm's published results table counts
the first (``benchmarks/timm_published_params.py``: 900 of its 900 architectures), inference-time tables
(RepVGG's "deploy" column) the last.

Both run on meta tensors (the arithmetic of fusion only needs shapes), so a meta model is fused without
memory. A model whose fusion code cannot run on meta (it reads values) is fused on a zero-filled CPU copy
and moved back to meta; the report says so.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from dnnbench.core.errors import InputError, ModelBuildError

FORMS = ("train", "deploy")
DEFAULT_FORM = "train"

_FOLD_INTO = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_PLAIN_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_PLAIN_FORWARDS = tuple(c.forward for c in _FOLD_INTO)
_SAME_WEIGHT_CONVS = ("Conv2dSame",)  # timm's: pads, then convolves with self.weight and self.bias as they are


def check_form(form: str | None) -> str:
    """``form`` if it names a form ("train", "deploy"); None is the default, train."""
    if form is None:
        return DEFAULT_FORM
    if form not in FORMS:
        raise InputError(f"unknown form {form!r}", "forms are train (the model as built) and deploy "
                         "(BatchNorm folded, re-parameterisable blocks fused)", "use --form train or --form deploy")
    return form


@dataclass
class DeployReport:
    """What ``to_deploy`` changed."""

    reparameterized: dict[str, int] = field(default_factory=dict)  # module class -> calls of fuse/reparameterize/...
    folded: int = 0  # BatchNorms folded into the preceding conv/linear
    left: dict[str, int] = field(default_factory=dict)  # why -> BatchNorms not folded
    on_real: str | None = None  # why fusion ran on a zero-filled CPU copy instead of meta tensors
    params_train: int | None = None  # params as built, before either rewrite: the count timm's results table gives
    # params after re-parameterisation, before BatchNorm folding: what timm's reparameterize_model leaves
    params_reparameterized: int | None = None
    params_deploy: int | None = None  # after both rewrites: what the deploy profile counts

    @property
    def reparameterized_count(self) -> int:
        return sum(self.reparameterized.values())

    def note(self) -> str:
        parts = [f"deploy form: {self.folded} BatchNorm(s) folded into the preceding conv/linear",
                 f"{self.reparameterized_count} module(s) re-parameterised"
                 + (f" ({', '.join(f'{n} x{c}' for n, c in sorted(self.reparameterized.items()))})"
                    if self.reparameterized else "")]
        if self.left:
            parts.append("BatchNorms left as they are: " + ", ".join(f"{c} {why}" for why, c in sorted(self.left.items())))
        if None not in (self.params_train, self.params_deploy) and self.params_deploy != self.params_train:
            figures = [f"{self.params_train:,} as built (--form train: the figure timm's published results table "
                       "gives)"]
            if self.reparameterized and self.params_reparameterized not in (None, self.params_deploy):
                figures.append(f"{self.params_reparameterized:,} after re-parameterisation alone (timm's "
                               "reparameterize_model)")
            figures.append(f"{self.params_deploy:,} deployed")
            parts.append("params " + ", ".join(figures))
        if self.on_real:
            parts.append(f"fused on a zero-filled CPU copy: {self.on_real}")
        return "; ".join(parts)


def to_deploy(module: nn.Module, example_inputs) -> tuple[nn.Module, DeployReport]:
    """A deploy-form copy of ``module`` (left untouched) and what was changed. ``example_inputs``: a callable
    ``device -> (args, kwargs)`` for the one forward (on meta) that finds which conv feeds which BatchNorm."""
    return deploy_inplace(copy.deepcopy(module), example_inputs)


def deploy_inplace(module: nn.Module, example_inputs) -> tuple[nn.Module, DeployReport]:
    """``module`` rewritten in place into its deploy form (see the module docstring); it is put in eval mode."""
    report = DeployReport(params_train=_params(module))
    module.eval()
    on_meta = any(t.device.type == "meta" for t in list(module.parameters()) + list(module.buffers()))
    if not on_meta:
        try:
            module = _reparameterize(module, report)
        except Exception as exc:  # noqa: BLE001 - the model's own fusion code: any failure is its
            raise ModelBuildError("fusing the model for --form deploy failed",
                                  f"{type(exc).__name__}: {_first_line(exc)}", "use --form train") from exc
    else:
        trial = copy.deepcopy(module)  # a fusion that fails half-way must not leave its half behind
        try:
            with torch.device("meta"):  # modules the fusion code creates live on meta too
                module = _reparameterize(trial, report)
        except Exception as exc:  # noqa: BLE001
            report = DeployReport(params_train=report.params_train,
                                  on_real=f"its fusion code cannot run on meta tensors ({_first_line(exc)})")
            module = _on_zeros(module, lambda m: _reparameterize(m, report))
    module.eval()
    report.params_reparameterized = _params(module)
    _fold_batchnorms(module, example_inputs, report)
    report.params_deploy = _params(module)
    return module, report


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def _reparameterize(module: nn.Module, report: DeployReport) -> nn.Module:
    """timm's ``reparameterize_model`` walk over the children (not the root), counting each call."""
    with torch.no_grad():
        _walk(module, report)
    return module


def _walk(m: nn.Module, report: DeployReport) -> None:
    for name, child in list(m.named_children()):
        kind = type(child).__name__
        if callable(getattr(child, "fuse", None)):
            setattr(m, name, child.fuse())
        elif callable(getattr(child, "reparameterize", None)):
            child.reparameterize()
        elif callable(getattr(child, "switch_to_deploy", None)):
            child.switch_to_deploy()
        else:
            kind = None
        if kind is not None:
            report.reparameterized[kind] = report.reparameterized.get(kind, 0) + 1
        _walk(child, report)  # as timm does: the child's own children (after fuse(), the old module's)


def _on_zeros(module: nn.Module, fn) -> nn.Module:
    """Run ``fn`` on a zero-filled CPU copy of a meta module; the result goes back to meta."""
    module = module.to_empty(device="cpu")
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            t.zero_()
            if t.is_floating_point():
                t.add_(1.0)  # running_var of 0 would fuse to inf; 1 keeps every division finite
    module = fn(module)
    return module.to("meta")


class _Producers:
    """One forward: which conv/linear module produced each BatchNorm's input, and how often each is read."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.conv_out: dict[int, str] = {}  # id(output tensor) -> conv module name
        self.keep: list[torch.Tensor] = []  # the outputs, alive so that their ids stay theirs
        self.conv_calls: dict[str, int] = {}
        self.bn_input: dict[str, int | None] = {}  # bn name -> id(input), None when called more than once
        self.reads: dict[int, int] = {}  # id(tensor) -> ops that read it

    def run(self, example_inputs) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        names = {id(m): n for n, m in self.module.named_modules()}
        producers = self

        class Reads(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                flat, _ = tree_flatten((args, kwargs or {}))
                for t in flat:
                    if isinstance(t, torch.Tensor) and id(t) in producers.conv_out:
                        producers.reads[id(t)] = producers.reads.get(id(t), 0) + 1
                return func(*args, **(kwargs or {}))

        def post(mod, args, out):
            name = names.get(id(mod))
            if name is None or not isinstance(mod, _FOLD_INTO) or not isinstance(out, torch.Tensor):
                return
            self.conv_calls[name] = self.conv_calls.get(name, 0) + 1
            self.conv_out[id(out)] = name
            self.keep.append(out)

        def pre(mod, args):
            name = names.get(id(mod))
            if name is None or not isinstance(mod, nn.modules.batchnorm._BatchNorm):
                return
            x = args[0] if args and isinstance(args[0], torch.Tensor) else None
            self.bn_input[name] = None if name in self.bn_input or x is None else id(x)

        hooks = []
        for m in self.module.modules():
            if isinstance(m, _FOLD_INTO):
                hooks.append(m.register_forward_hook(post))
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                hooks.append(m.register_forward_pre_hook(pre))
        try:
            if any(t.device.type == "meta" for t in self.module.parameters()):
                args, kwargs = example_inputs("meta")
                call = lambda: self.module(*args, **kwargs)  # noqa: E731
            else:  # real weights: the forward that finds the pairs runs on meta copies of them
                state = {n: torch.empty_like(t, device="meta") for n, t in
                         list(self.module.named_parameters()) + list(self.module.named_buffers())}
                args, kwargs = example_inputs("meta")
                call = lambda: torch.func.functional_call(self.module, state, args, kwargs)  # noqa: E731
            with torch.no_grad(), Reads():
                call()
        finally:
            for h in hooks:
                h.remove()


def _fold_batchnorms(module: nn.Module, example_inputs, report: DeployReport) -> None:
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    bns = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    producers = _Producers(module)
    try:
        producers.run(example_inputs)
    except Exception as exc:  # noqa: BLE001 - the forward itself is the count's to judge; here: fold nothing
        report.left[f"not traced ({type(exc).__name__}: {_first_line(exc)})"] = len(bns)
        return
    modules = dict(module.named_modules())

    def leave(why: str) -> None:
        report.left[why] = report.left.get(why, 0) + 1

    for name, bn in bns:
        x = producers.bn_input.get(name)
        conv_name = producers.conv_out.get(x) if x is not None else None
        if name not in producers.bn_input:
            leave("not run in the forward")
            continue
        if x is None:
            leave("run more than once")
            continue
        if conv_name is None:
            leave("not after a conv/linear (e.g. pre-activation)")
            continue
        conv = modules[conv_name]
        if producers.conv_calls.get(conv_name, 0) != 1 or producers.reads.get(x, 0) != 1:
            leave("after a conv whose output is read elsewhere too")
            continue
        if not bn.track_running_stats or bn.running_mean is None or (type(bn) not in _PLAIN_BN and not _is_bn_act(bn)):
            leave("without running statistics, or of a class that does more than normalise")
            continue
        if type(conv).forward not in _PLAIN_FORWARDS and type(conv).__name__ not in _SAME_WEIGHT_CONVS:
            leave("after a conv that changes its weight in forward (e.g. weight standardisation)")
            continue
        if isinstance(conv, nn.Linear):
            if conv.out_features != bn.num_features:
                leave("after a linear of another width")
                continue
            fused = fuse_linear_bn_eval(conv, bn)
        else:
            if conv.out_channels != bn.num_features:
                leave("after a conv of another width")
                continue
            fused = fuse_conv_bn_eval(conv, bn)
        _replace(module, conv_name, fused)
        _replace(module, name, nn.Sequential(bn.drop, bn.act) if _is_bn_act(bn) else nn.Identity())
        report.folded += 1


def _is_bn_act(bn: nn.Module) -> bool:
    """timm's BatchNormAct2d: a BatchNorm2d followed by its own ``drop`` and ``act`` modules."""
    return (type(bn).__name__ == "BatchNormAct2d" and isinstance(getattr(bn, "drop", None), nn.Module)
            and isinstance(getattr(bn, "act", None), nn.Module))


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, new)
