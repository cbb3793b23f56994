"""The composition: public functions that tie sources, counting and (later) measurement together."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from dnnbench.core.errors import DnnbenchError, InputError, UnavailableError, check_batch_size
from dnnbench.core.records import Profile
from dnnbench.core.refs import ModelRef
from dnnbench.core.specs import InputSpec, LoadedModel
from dnnbench.counting.deploy import check_form
from dnnbench.counting.profile import profile_model
from dnnbench.sources import load, sets

__all__ = ["profile", "profile_many", "load_model", "list_models", "SetResult", "sensors", "bench", "machine",
           "runtimes", "runtime_configs", "check_study_inputs"]


def load_model(ref: str | ModelRef, device: str = "cpu", weights: str | None = None,
               download_weights: bool = False) -> LoadedModel:
    """Build a model from its reference (random weights unless ``weights`` is given)."""
    return load(ref, device=device, weights=weights, download=download_weights)


def _as_loaded(model, device: str = "meta") -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, torch.nn.Module):
        return LoadedModel(type(model).__name__, model, InputSpec.image(3, 224, 224),
                           notes=["no input given: assuming one 3x224x224 image"])
    return load(model, device=device)


def _parse_input_size(input_size) -> tuple[int, int] | None:
    if input_size is None:
        return None
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    if isinstance(input_size, str):
        try:
            parts = [int(p) for p in input_size.replace("x", ",").split(",") if p.strip()]
        except ValueError:
            parts = []
        if len(parts) not in (1, 2):
            raise InputError(f"input size {input_size!r} is malformed", "it must be H or H,W in pixels",
                             "write e.g. --input-size 224 or --input-size 224,320")
        input_size = tuple(parts) if len(parts) == 2 else (parts[0], parts[0])
    h, w = input_size
    if h < 1 or w < 1:
        raise InputError(f"input size {h}x{w} is not allowed", "sizes are positive pixel counts", "use e.g. --input-size 224")
    return int(h), int(w)


def profile(model, batch_size: int = 1, input_size=None, inputs: InputSpec | None = None,
            form: str = "train") -> Profile:
    """Static profile of ``model`` (a reference, an nn.Module or a LoadedModel) at ``batch_size``.

    ``input_size``: H, (H, W) or "H,W" for single-image models; default is the model's native size.
    Nothing is computed for real unless the model cannot run on meta tensors (then ``Profile.mode`` is "real").
    ``form``: "train" (the model as built) or "deploy" (BatchNorm folded, re-parameterisable blocks fused:
    what an inference runtime executes; see ``dnnbench.counting.deploy``). The model given is not changed.
    """
    check_batch_size(batch_size, "batch size")
    form = check_form(form)
    size = _parse_input_size(input_size)
    lm = _as_loaded(model)
    spec = inputs or lm.inputs
    if size is not None:
        spec = spec.with_image_size(*size)
    if form == "deploy":
        lm = deploy_form(lm, spec)
    import dataclasses

    return dataclasses.replace(profile_model(lm, batch_size, spec), form=form)


def deploy_form(lm: LoadedModel, spec: InputSpec | None = None, inplace: bool = False) -> LoadedModel:
    """``lm`` in its deploy form (a copy unless ``inplace``), with a note saying what was fused."""
    import dataclasses

    from dnnbench.counting.deploy import deploy_inplace, to_deploy

    spec = spec or lm.inputs
    module, report = (deploy_inplace if inplace else to_deploy)(lm.module, lambda device: spec.make(1, device))
    return dataclasses.replace(lm, module=module, notes=[*lm.notes, report.note()])


@dataclass
class SetResult:
    """One member of a set: its profile, or why there is none."""

    label: str
    ref: str | None
    profile: Profile | None = None
    error: str | None = None
    paper_top1: float | None = None


def expand_models(names: list[str]) -> list[sets.SetEntry]:
    """Turn CLI words (set names and references) into set entries, keeping order."""
    entries: list[sets.SetEntry] = []
    for name in names:
        if sets.is_set(name):
            entries.extend(sets.expand(name))
        else:
            entries.append(sets.SetEntry(name, name))
    return entries


def profile_many(names: list[str], batch_size: int = 1, input_size=None,
                 on_start: Callable[[sets.SetEntry], None] | None = None, form: str = "train") -> Iterator[SetResult]:
    """Profile each model; a model that fails becomes a result with its error, and the rest go on.

    When not one model could be profiled, the results are yielded and then a ``DnnbenchError`` naming each
    failure is raised: a command whose every model failed did nothing, and must not end as a success.
    """
    failures: list[tuple[str, DnnbenchError | None, str]] = []
    any_ok = False
    for entry in expand_models(names):
        if on_start:
            on_start(entry)
        if entry.ref is None:
            failures.append((entry.label, None, f"unavailable: {entry.unavailable}"))
            yield SetResult(entry.label, None, None, f"unavailable: {entry.unavailable}", entry.paper_top1)
            continue
        try:
            prof = profile(load(entry.ref, device="meta"), batch_size, input_size, form=form)
            any_ok = True
            yield SetResult(entry.label, entry.ref, prof, None, entry.paper_top1)
        except DnnbenchError as exc:
            if len(names) == 1 and not sets.is_set(names[0]):
                raise
            failures.append((entry.label, exc, exc.one_line()))
            yield SetResult(entry.label, entry.ref, None, exc.one_line(), entry.paper_top1)
    if failures and not any_ok:
        _raise_all_failed(failures)


def _raise_all_failed(failures: list[tuple[str, "DnnbenchError | None", str]]) -> None:
    """One error for "every model failed": the only failure's own error, else each model's in one line."""
    errors = [exc for _, exc, _ in failures]
    if len(failures) == 1 and errors[0] is not None:
        raise errors[0]
    kinds = {type(e) for e in errors}
    cls = kinds.pop() if len(kinds) == 1 and None not in kinds else DnnbenchError
    whys, fixes = [], []
    for label, exc, line in failures:
        if exc is None:
            whys.append(f"{label} is {line.replace(': ', ' (', 1)})" if ": " in line else f"{label}: {line}")
            continue
        whys.append(f"{exc.what.rstrip('.')} ({exc.why.rstrip('.')})" if exc.why else exc.what.rstrip("."))
        if exc.fix and exc.fix not in fixes:
            fixes.append(exc.fix.rstrip("."))
    raise cls(f"none of the {len(failures)} models could be profiled", "; ".join(whys),
              "; ".join(fixes) or "fix or leave out the models named above")


def check_study_inputs(models, input_size=None, target_ci: float = 0.02, max_time_per_cell: float = 10.0,
                       threads: int | None = None) -> None:
    """One-line errors for a study's user mistakes, before anything is planned, measured or stored.

    Every model reference must build (on the meta device, as ``bench`` does: an unknown model, a malformed
    reference or a factory file that does not import raises its own error); set members merely unavailable
    here (e.g. timm not installed) are not mistakes, the study lists them. ``input_size`` must parse and
    apply to every model; the bench options must pass ``check_bench_options``.
    """
    from dnnbench.core.measurements import check_bench_options

    check_bench_options(threads, target_ci, max_time_per_cell)
    size = _parse_input_size(input_size)
    seen: set[str] = set()
    for entry in expand_models(list(models)):
        if entry.ref is None or entry.ref in seen:
            continue
        seen.add(entry.ref)
        lm = load(entry.ref, device="meta")
        if size is not None:
            try:
                lm.inputs.with_image_size(*size)
            except InputError as exc:
                raise InputError(f"{exc.what} ({lm.ref})", exc.why, exc.fix) from exc


def check_calibration(calibration: str | None, calibration_count: int | None,
                      precisions) -> tuple[str | None, int | None]:
    """The calibration options as cells take them (the folder's absolute path, the count), or a one-line error.

    Both only mean something to static int8: given without int8 among ``precisions`` (a name, comma list or "all")
    is a mistake; so is a folder that does not exist or holds no image, and a count below 1.
    """
    import os

    from dnnbench.core.errors import check_at_least
    from dnnbench.core.measurements import PRECISIONS, parse_choices
    from dnnbench.runtimes import calibration as cal

    if calibration is None and calibration_count is None:
        return None, None
    given = " and ".join(o for o, v in (("--calibration", calibration), ("--calibration-count", calibration_count))
                         if v is not None)
    if "int8" not in parse_choices(precisions or "fp32", PRECISIONS, "--precision"):
        raise InputError(f"{given} is given but int8 is not in --precision",
                         "calibration images set the activation ranges of static int8 only",
                         "add int8 to --precision (e.g. --precision fp32,int8), or leave the option out")
    if calibration_count is not None:
        check_at_least("--calibration-count", calibration_count, 1, "it counts the calibration images")
    if calibration is not None:
        cal.check_folder(str(calibration))
        calibration = os.path.abspath(str(calibration))
    return calibration, calibration_count


def list_models(pattern: str | None = None, task: str | None = None) -> list[dict]:
    """Offline listing: published params, GMACs, task and quality metrics of torchvision models (or a set's
    members), optionally of one ``task`` (see core.specs.TASKS)."""
    return sets.listing(pattern, task)


def sensors(spec: str | None = None, root: str | None = None) -> list:
    """Every power sensor (or those ``spec`` names, e.g. "meter:log.csv"), whether it works here and why not.

    Returns ``SensorInfo`` records (``name``, ``available``, ``reason``, ``scope``, ``domains``, ``method``,
    ``update_period_s``...). ``root``: the sysfs root (default $DNNBENCH_SYSFS_ROOT, else /sys).
    """
    from dnnbench.power import probe_sensors

    return probe_sensors(spec, root)


# ---- bench: time, throughput, memory and roofline per (model, batch size) ---------------------------

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
BenchEvent = Callable[[str, "CellSpec", object], None]  # ("start"|"progress"|"done", spec, payload)


def _bench_loader(ref: str, device: str, input_size=None, form: str = "train") -> LoadedModel:
    """Build the model inside a worker process. Module-level, so ``functools.partial`` of it pickles.

    Initialisers tile a fixed random block (``cheap_init``): timing and memory do not depend on the weights'
    values, and vgg16 builds in 0.25 s instead of 2.4 s. Weights loaded from a checkpoint replace them.
    """
    from dnnbench.sources.meta_build import cheap_init

    with cheap_init():
        lm = load(ref, device=device)
    size = _parse_input_size(input_size)
    if size is not None:
        lm.inputs = lm.inputs.with_image_size(*size)
    if form == "deploy":  # fused in place: the worker's only copy is what it measures
        lm = deploy_form(lm, inplace=True)
    return lm


_PREPARED: set[str] = set()  # references BenchLoader.prepare ran for in this process


@dataclass(frozen=True)
class BenchLoader:
    """What a worker process calls to build the model itself; picklable (a reference, not a module)."""

    ref: str
    device: str
    input_size: object = None
    form: str = "train"

    def prepare(self) -> None:
        """Import what building needs, so that the worker's memory baseline includes the libraries.

        torchvision/timm models are built once on the meta device (imports everything, allocates nothing);
        a dotted python: module is imported. A python: file is executed only by the real build.
        Once per process and reference: a worker forked from the fork server, which prepared already,
        finds it done.
        """
        import importlib

        from dnnbench.core.refs import parse_ref

        if self.ref in _PREPARED:
            return
        r = parse_ref(self.ref)
        if r.source in ("torchvision", "timm", "onnx"):
            load(r, device="meta")
        elif r.source == "python" and r.target and not r.target.endswith(".py"):
            importlib.import_module(r.target)
        _PREPARED.add(self.ref)

    def prepare_key(self) -> tuple:
        """What ``prepare()`` imports: loaders with the same key share a process in the fork server."""
        from dnnbench.core.refs import parse_ref

        r = parse_ref(self.ref)
        if r.source in ("torchvision", "timm", "onnx"):
            return (r.source,)
        if r.source == "python" and r.target and not r.target.endswith(".py"):
            return ("python", r.target)
        return ("nothing",)

    def __call__(self) -> LoadedModel:
        return _bench_loader(self.ref, self.device, self.input_size, self.form)


def check_device(device: str) -> str:
    """``device`` if bench can run on it here, else a one-line error saying why and what to use."""
    from dnnbench.core.measurements import check_device_name

    if check_device_name(device) == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            why = ("this torch is built without CUDA" if torch.version.cuda is None
                   else "torch.cuda.is_available() is False: no NVIDIA GPU or driver is visible")
            raise UnavailableError(f"--device {device} is not available on this machine", why, "use --device cpu")
        index = device.partition(":")[2]
        if index and int(index) >= torch.cuda.device_count():
            raise InputError(f"--device {device} does not exist", f"{torch.cuda.device_count()} CUDA device(s) here",
                             "use --device cuda or cuda:N with N below the device count")
    return device


def check_sensors(spec: str | None, estimate_power_w: float | None = None) -> str:
    """A power sensor spec that parses and names only sensors that work here; one-line error otherwise."""
    from dnnbench.power import close_sensors, open_sensors

    spec = (spec or "none").strip()
    if estimate_power_w is not None and not estimate_power_w > 0:
        raise InputError(f"--estimate-power {estimate_power_w} is not allowed", "it is the device's TDP in watts",
                         "give a positive number, e.g. --estimate-power 65")
    close_sensors(open_sensors(spec))  # raises for a malformed spec or an explicitly named sensor absent here
    return spec


def _is_onnx(model) -> bool:
    """An ONNX file as the model (an ``onnx:`` reference, or a module that carries ``onnx_path``)."""
    from dnnbench.core.refs import parse_ref

    if isinstance(model, LoadedModel):
        model = model.module
    if isinstance(model, torch.nn.Module):
        return getattr(model, "onnx_path", None) is not None
    ref = model if isinstance(model, ModelRef) else parse_ref(str(model))
    return ref.source == "onnx"


ONNX_RUNTIMES = ("onnxruntime", "openvino")  # the runtimes that run an ONNX file as given


def runtime_configs(model, runtimes=None, precisions="fp32", device: str = "cpu",
                    strict: bool = True) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The (runtime, precision) pairs ``model`` can be measured with here, and those left out with why.

    ``runtimes``: None (eager; onnxruntime for an ONNX file), a name, a comma list or sequence, or "all";
    ``precisions`` likewise (fp32, fp16, bf16, int8 or "all"). A runtime named explicitly that cannot run here
    (e.g. onnxruntime without the ``onnx`` extra, eager for an ONNX file) raises its one-line error; with "all"
    it is left out with that reason. A precision the runtime or device lacks is left out with its reason;
    when no pair can run at all, the first reason is raised. ``strict=False`` treats named runtimes like "all"
    (a study of several models checks the runtimes once, then leaves out per model what cannot run it).
    """
    from dnnbench.core.measurements import PRECISIONS, RUNTIMES, parse_choices
    from dnnbench import runtimes as rts

    onnx_model = _is_onnx(model)
    words = runtimes.split(",") if isinstance(runtimes, str) else list(runtimes or [])
    explicit = strict and runtimes is not None and "all" not in [w.strip() for w in words]
    names = parse_choices(runtimes if runtimes is not None else ("onnxruntime" if onnx_model else "eager"),
                          RUNTIMES, "--runtime")
    precs = parse_choices(precisions or "fp32", PRECISIONS, "--precision")
    configs: list[tuple[str, str]] = []
    left: list[tuple[str, DnnbenchError]] = []
    for name in names:
        if onnx_model and name not in ONNX_RUNTIMES:
            exc = InputError(f"an ONNX file cannot run under --runtime {name}",
                             "an ONNX graph runs only in ONNX Runtime or OpenVINO",
                             "use --runtime onnxruntime (the default for onnx: models) or openvino")
            if explicit:
                raise exc
            left.append((name, exc))
            continue
        avail = rts.availability(name, device)
        if not avail.ok:
            if explicit:
                raise avail.error()
            left.append((name, avail.error()))
            continue
        for prec in precs:
            why = rts.get(name).unsupported(prec, device)
            sup = rts.precisions.support(prec, device)
            if why is None and not sup.ok:
                why = sup.note
            if why:
                left.append((f"{name} {prec}", InputError(f"--runtime {name} --precision {prec} cannot run on {device}",
                                                          why, "choose another precision or runtime")))
            else:
                configs.append((name, prec))
    if not configs:
        raise left[0][1]
    return configs, [(label, exc.one_line()) for label, exc in left]


def runtimes(device: str = "cpu") -> list[dict]:
    """Every runtime: whether it works here (with the reason and fix when not) and each precision's support.

    Each dict: ``name``, ``description``, ``available``, ``reason``, ``fix``, ``details`` (versions, execution
    providers, compiler), ``precisions`` (name -> {"runs", "native", "note"}).
    """
    from dnnbench.core.measurements import PRECISIONS, check_device_name
    from dnnbench import runtimes as rts

    check_device_name(device)
    out = []
    for name in rts.RUNTIMES.names():
        rt = rts.get(name)
        avail = rt.availability(device)
        precs = {}
        for p in PRECISIONS:
            why = rt.unsupported(p, device)
            sup = rts.precisions.support(p, device)
            precs[p] = {"runs": why is None and sup.ok, "native": sup.native if why is None else False,
                        "note": why or sup.note}
        out.append({"name": name, "description": rt.description, "available": avail.ok, "reason": avail.reason,
                    "fix": avail.fix, "details": avail.details, "precisions": precs})
    order = {"eager": 0, "compile": 1, "onnxruntime": 2, "openvino": 3, "executorch": 4}
    return sorted(out, key=lambda r: order.get(r["name"], 9))


@dataclass(frozen=True)
class BenchPlan:
    """What one bench call will measure: the model's reference, its inputs, and one spec per batch size."""

    ref: str
    specs: tuple  # CellSpec per batch size, ascending; each spec's digest is its cell's identity
    inputs: InputSpec
    environment: object  # the parent's Environment (its fingerprint is in every spec)
    meta: LoadedModel  # the model on the meta device: static counts per batch size, without building it again
    given: object = None  # a module object to measure in this process, else None


def plan_bench(model, config: "BenchConfig", env=None) -> BenchPlan:
    """Validate ``config`` for ``model`` and spell out every cell's full spec (what a study resumes by).

    ``env``: this machine's Environment when the caller captured it already (a study plans many models).
    """
    from dnnbench.core.measurements import DEFAULT_PROCESSES, CellSpec, TimingSpec, check_bench_options
    from dnnbench.host import environment

    sizes = config.sizes()
    check_bench_options(config.threads, config.target_ci, config.max_time_per_cell, config.min_samples,
                        DEFAULT_PROCESSES if config.processes is None else config.processes)
    device = check_device(config.device)
    threads = config.threads or environment.default_threads()
    sensors = check_sensors(config.sensors, config.estimate_power_w)
    for name, value in (("runtime", config.runtime), ("precision", config.precision)):
        if value is not None and (not isinstance(value, str) or "," in value or value == "all"):
            raise InputError(f"bench takes one {name}, not {value!r}", "one call measures one configuration",
                             f"call bench once per {name} (runtime_configs lists them)")
    runtime, precision = runtime_configs(model, config.runtime, config.precision, device)[0][0]
    given = model if isinstance(model, (torch.nn.Module, LoadedModel)) else None
    if given is not None and not config.in_process:
        raise InputError("a model object cannot be sent to a worker subprocess",
                         "isolated cells rebuild the model from its reference",
                         "pass a reference (e.g. 'resnet50', 'python:file.py:factory'), or in_process=True")
    meta = _as_loaded(given) if given is not None else load(str(model), device="meta")  # unknown model: fails here
    inputs = meta.inputs
    size = _parse_input_size(config.input_size)
    if size is not None:
        inputs = inputs.with_image_size(*size)
    form = check_form(config.form)
    if form == "deploy":  # the static counts are of what is measured
        meta = deploy_form(meta, inputs)
    calibration, calibration_count = check_calibration(config.calibration, config.calibration_count, precision)
    if calibration is not None:  # images through the model's own transform: mistakes here, not in every cell
        from dnnbench.runtimes.calibration import from_folder_mistake

        why = from_folder_mistake(meta, inputs)
        if why is not None:
            raise why
    processes = config.processes
    if processes is None:  # other runtimes (and static int8) prepare (export, compile, quantize) in every process: one
        processes = DEFAULT_PROCESSES if runtime == "eager" and precision != "int8" and not config.in_process else 1
    if config.in_process:
        processes = 1  # one process is all there is
    tspec = TimingSpec(target_ci=config.target_ci, max_time_s=float(config.max_time_per_cell),
                       min_samples=config.min_samples, processes=processes)
    env = env or environment.capture(device)
    specs = tuple(CellSpec(meta.ref, b, device, threads, tspec, "in-process" if config.in_process else "subprocess",
                           sensors=sensors, estimate_tdp_w=config.estimate_power_w, runtime=runtime,
                           precision=precision, input_shape=tuple(tuple(s) for s in inputs.shapes(b)),
                           machine=env.fingerprint, task=getattr(meta, "task", None) or "classification",
                           form=form, calibration=calibration or "", calibration_count=calibration_count or 0)
                  for b in sizes)
    return BenchPlan(meta.ref if given is not None else str(model), specs, inputs, env, meta, given)


def bench(model, batch_sizes=None, *, config: "BenchConfig | None" = None, on_event: BenchEvent | None = None,
          **options) -> "BenchRun":
    """Time, throughput, memory and power of ``model`` at each batch size on ``device``; one cell per batch size.

    ``config``: a ``BenchConfig`` (or its fields as keyword ``options``: device, threads, target_ci,
    max_time_per_cell, in_process, input_size, min_samples, sensors, estimate_power_w, runtime, precision,
    processes). Each cell runs in worker subprocesses of its own (``in_process=False``) so that its peak RSS
    is its own and a crash or OOM stays in that cell: an OOM marks the larger batch sizes "skipped", an error
    only its cell. ``model``: a reference (a module object needs ``in_process=True``). Sampling stops when
    the 95 % CI of the median is within ``target_ci`` or after ``max_time_per_cell`` seconds. Achieved FLOP/s
    is compared with the peak ``dnnbench machine`` cached. ``sensors``: power sensors measured after each
    cell's timing ("auto", "none", "rapl,nvml:0", "meter:FILE"); the headline power is the sensor covering the
    device measured. Every configuration but eager fp32 records an output-equivalence check against eager
    fp32 on the same input. ``processes``: worker processes per cell (default 5 for isolated eager cells).
    Ctrl-C returns the cells finished so far with ``interrupted=True`` (the cell in progress is lost).
    """
    from dnnbench.core.measurements import BenchConfig

    config = config or BenchConfig()
    if batch_sizes is not None:
        options["batch_sizes"] = batch_sizes
    if options:
        config = config.with_(**options)
    return run_plan(plan_bench(model, config), config, on_event)


def prestart(plan: BenchPlan, config: "BenchConfig") -> None:
    """Start the fork server for ``plan``'s cells and have it prepare the model, without waiting (a fleet node
    warms while the driver runs static profiles). Nothing for in-process plans or where cells start fresh."""
    from dnnbench.isolation.dispatch import prestart as start

    if config.in_process or not plan.specs:
        return
    first = plan.specs[0]
    start(first, BenchLoader(plan.ref, first.device, config.input_size, first.form))


def run_plan(plan: BenchPlan, config: "BenchConfig", on_event: BenchEvent | None = None,
             should_stop: Callable[[], bool] | None = None) -> "BenchRun":
    """Measure every cell of ``plan`` (see ``bench``); ``should_stop`` is asked before each cell (a budget)."""
    from dnnbench.core.measurements import BenchCell, BenchRun, StaticEstimate
    from dnnbench.core.record import now_iso
    from dnnbench.host import machine
    from dnnbench.isolation.dispatch import prestart, run_isolated
    from dnnbench.latency.cell import run_cell

    specs, env = plan.specs, plan.environment
    first = specs[0]
    device, threads, runtime, precision = first.device, first.threads, first.runtime, first.precision
    emit = on_event or (lambda kind, spec, payload: None)
    lm = None
    old_threads, old_bench = torch.get_num_threads(), torch.backends.cudnn.benchmark
    cells: list[BenchCell] = []
    oom_at = None
    interrupted = False
    peak_why = (f"unavailable: no measured peak for this machine (fingerprint {env.fingerprint}) at {threads} "
                f"threads in {machine.cache_path(env.fingerprint)}; run `dnnbench machine --device "
                f"{device.split(':')[0]} --threads {threads}` (about 10 s) to measure it")
    peak = machine.load_peak(env.fingerprint, device, threads)
    try:
        loader = BenchLoader(plan.ref, device, config.input_size, first.form)
        if not config.in_process:  # the fork server imports torch and the model's libraries while the parent profiles
            prestart(first, loader)
        meta = plan.meta
        statics: dict[int, StaticEstimate | str] = {}
        for s in specs:
            try:
                p = profile_model(meta, s.batch_size, plan.inputs)
                statics[s.batch_size] = StaticEstimate(p.macs, p.flops, p.weight_bytes, p.activation_peak_bytes)
            except DnnbenchError as exc:
                statics[s.batch_size] = f"the static profile failed: {exc.one_line()}"
        if config.in_process:
            torch.set_num_threads(threads)
            if plan.given is not None:
                lm = _as_loaded(plan.given, device=device)
                lm.module.to(device)
                lm.inputs = plan.inputs
                if first.form == "deploy":  # a copy: the caller's module stays as it was
                    lm = deploy_form(lm)
            else:
                lm = _bench_loader(plan.ref, device, config.input_size, first.form)
        for spec in specs:
            if should_stop is not None and should_stop():
                break
            b = spec.batch_size
            if oom_at is not None:
                now = now_iso()
                cell = BenchCell(spec, "skipped", f"batch size {oom_at} already ran out of memory",
                                 started_at=now, finished_at=now)
            else:
                emit("start", spec, None)

                def progress(phase, n, elapsed, rel, _spec=spec):
                    emit("progress", _spec, (phase, n, elapsed, rel))

                if config.in_process:
                    cell = run_cell(spec, lambda: lm, progress, isolated=False)
                else:
                    cell = run_isolated(spec, loader, progress)
                if cell.status == "oom":
                    oom_at = b
            cell = _finish_cell(cell, statics[b], peak, peak_why)
            emit("done", spec, cell)
            cells.append(cell)
    except KeyboardInterrupt:
        interrupted = True  # what finished is kept and returned; the cell in progress is lost
    finally:
        torch.set_num_threads(old_threads)
        torch.backends.cudnn.benchmark = old_bench
    return BenchRun(first.model, device, threads, cells, env, peak, runtime=runtime, precision=precision,
                    interrupted=interrupted, unavailable={} if peak is not None else {"machine_peak": peak_why})


def _finish_cell(cell, static, peak, peak_why: str):
    """The worker's cell with the parent's static counts and the machine's measured peak."""
    from dnnbench.core.measurements import peak_warning

    unavailable = dict(cell.unavailable)
    if isinstance(static, str):
        unavailable["static"] = static
        static = None
    if peak is None:
        unavailable["machine_peak"] = peak_why
    cell = cell.with_(static=static, machine_peak_flops_per_s=peak.peak_flops_per_s if peak else None,
                      unavailable=unavailable)
    warning = peak_warning(cell.roofline)
    return cell.with_(warnings=cell.warnings + (warning,)) if warning else cell


def machine(device: str = "cpu", threads: int | None = None, cached: bool = False) -> "list[MachinePeak]":
    """Measure (or with ``cached``, read) this machine's peak FLOP/s and bandwidth; measured peaks are cached.

    A peak that could not be cached is returned all the same, with ``unavailable["cache"]`` saying why.
    """
    from dnnbench.core.measurements import check_bench_options
    from dnnbench.host import environment
    from dnnbench.host import machine as probe

    check_bench_options(threads)
    device = check_device(device)
    fingerprint = environment.capture(device).fingerprint
    if cached:
        peaks = probe.cached_peaks(fingerprint)
        if not peaks:
            raise UnavailableError(f"no cached peak for this machine (fingerprint {fingerprint})",
                                   f"{probe.cache_path(fingerprint)} does not exist",
                                   "run `dnnbench machine` without --cached to measure it")
        return peaks
    peak = probe.probe(device, threads or environment.default_threads())
    # an unwritable cache must not discard seconds of measurement: the peak says why it was not cached
    return [probe.save_or_explain(peak)]


# ---- accuracy: reported (offline) and measured top-1/top-5 -------------------------------------------

__all__ += ["accuracy", "reported_accuracy"]


def reported_accuracy(model) -> "ReportedAccuracy | None":
    """The accuracy published with a model's weights, offline (torchvision metadata; timm: none offline)."""
    lm = model if isinstance(model, LoadedModel) else load(model, device="meta")
    return lm.reported


def _accuracy_weights(ref: ModelRef, weights: str | None) -> tuple[str | None, str, list[str]]:
    """(weights for sources.load, the label stored in the record, notes) for a --weights value."""
    if weights is None or weights.lower() == "random":
        return None, "random", ["random weights: accuracy is at chance level (use it to time the pipeline only)"]
    if weights == "DEFAULT" and ref.source == "python":
        return None, "factory", []  # a factory's module comes with whatever weights the factory gave it
    return weights, weights, []


def accuracy(model, data: str, config: "AccuracyConfig | None" = None, *, on_progress=None,
             **options) -> "Accuracy | DetectionAccuracy | SegmentationAccuracy":
    """Measured quality of ``model`` on the images under ``data``, by its task: top-1/top-5 with 95 % Wilson
    intervals; box mAP from a COCO ``annotations`` JSON (detection); mIoU and pixel accuracy from a mask
    folder (segmentation: ``annotations``, or ``data``'s images/ and masks/); these two with bootstrap CIs.

    ``model``: a reference (or a LoadedModel). ``data``: class folders (ImageNet wnids) or, with ``labels``,
    a flat folder. The settings (``weights``, ``labels``, ``limit``, ``batch_size``, ``workers``, ``device``,
    ``seed``, ``download_weights``, ``annotations``, ``resamples``) come as an ``AccuracyConfig`` or as
    keywords of the same names, which override the config's (see ``dnnbench.core.accuracy.AccuracyConfig``); a bad value is an InputError.
    ``on_progress(files_done, files_total, images_scored, elapsed_s)``.
    """
    cfg = _accuracy_config(config, options)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {cfg.device} is not available here", "torch sees no CUDA device",
                         "use --device cpu")
    from dnnbench.core.refs import parse_ref
    from dnnbench.evaluate.accuracy import measure

    if isinstance(model, LoadedModel):
        lm, label, notes = model, None, []
    else:
        ref = parse_ref(model) if isinstance(model, str) else model
        w, label, notes = _accuracy_weights(ref, cfg.weights)
        lm = load(ref, device="cpu", weights=w, download=cfg.download_weights)
    # by the model's task: top-1/top-5 (Accuracy), box mAP (DetectionAccuracy) or mIoU (SegmentationAccuracy)
    return measure(lm, data, cfg, weights=label, notes=notes, on_progress=on_progress)


def accuracy_configs(model, data: str, runtimes=None, precisions=None, config: "AccuracyConfig | None" = None, *,
                     on_progress=None, **options) -> list:
    """Top-1/top-5 of ``model`` under eager fp32 and each (``runtimes`` x ``precisions``) on the same images.

    ``runtimes``/``precisions``: names, comma lists or "all", as for ``bench`` (default eager, fp32). A runtime
    named explicitly that cannot run here is its one-line error; a precision it lacks is left out and said.
    Returns eager fp32's ``Accuracy`` first (the reference), then per other configuration an ``Accuracy`` with
    ``paired`` (McNemar's exact test, the top-1 difference in points with its 95 % interval, agreement of the
    top-1 classes) or a ``ConfigUnavailable`` with why. Settings as for ``accuracy``; ``calibration`` (a folder
    of images not in ``data``) and ``calibration_count`` for static int8 — by default the images ``limit`` left
    out calibrate it, and with every image evaluated it is unavailable.
    """
    import os

    from dnnbench.core.accuracy import ConfigUnavailable
    from dnnbench.core.refs import parse_ref
    from dnnbench.evaluate.accuracy import measure_configs

    cfg = _accuracy_config(config, options)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {cfg.device} is not available here", "torch sees no CUDA device",
                         "use --device cpu")
    if cfg.calibration and not os.path.isdir(cfg.calibration):
        raise InputError(f"--calibration {cfg.calibration} is not a folder", "static int8 calibrates on the images "
                         "in a folder", "give a folder of images that are not in --data")
    if isinstance(model, LoadedModel):
        ref = model.ref
    else:
        ref = parse_ref(model) if isinstance(model, str) else model
    configs, left = runtime_configs(str(ref), runtimes, precisions or "fp32", cfg.device)
    if isinstance(model, LoadedModel):
        lm, label, notes = model, None, []
    else:
        w, label, notes = _accuracy_weights(ref, cfg.weights)
        lm = load(ref, device="cpu", weights=w, download=cfg.download_weights)
    results = measure_configs(lm, data, cfg, configs, weights=label, notes=notes, on_progress=on_progress)
    for what, why in left:  # the pairs this runtime or device cannot run, said beside the measured ones
        rt, _, prec = what.partition(" ")
        results.append(ConfigUnavailable(str(lm.ref), rt, prec or "-", f"unavailable: {why}"))
    return results


__all__ += ["accuracy_configs"]


def _accuracy_config(config: "AccuracyConfig | None", options: dict) -> "AccuracyConfig":
    """``config`` with ``options`` (AccuracyConfig's field names) applied; checked once, by AccuracyConfig."""
    from dnnbench.core.accuracy import AccuracyConfig
    from dnnbench.core.config import with_options

    return with_options(AccuracyConfig, config, options, "accuracy")


# ---- analysis of stored results (pick, report) ---------------------------------------------------

__all__ += ["pick", "report"]

DEFAULT_REPORT_DIR = "dnnbench-report"


def _stored(store: str | None):
    """(frame, environments, where) of an existing store; NoResultsError if a store file does not exist."""
    import os

    from sqlalchemy.engine import make_url

    from dnnbench.analysis.errors import NoResultsError
    from dnnbench.store import default_store_url, open_store
    from dnnbench.store.store import normalize_url

    url = normalize_url(store) if store else default_store_url()
    try:
        parsed = make_url(url)
        path = parsed.database if parsed.get_backend_name() == "sqlite" else None
    except Exception:  # malformed: open_store says why
        path = None
    if path and path != ":memory:" and not os.path.exists(path):
        raise NoResultsError(f"there is no store at {path}", "nothing has been measured into it yet",
                             f"run e.g. `dnnbench study resnet18 mobilenet_v2 alexnet --quick --store {path}` first")
    with open_store(url, readonly=True) as st:
        return st.frame(), st.environments(), st.where


def _check_setup_device(device: str | None) -> None:
    """A --device for pick/report names a device results can come from; else one line (not a study hint
    that study would refuse)."""
    from dnnbench.core.measurements import check_device_name

    if device is None:
        return
    try:
        check_device_name(device)
    except InputError as exc:
        raise InputError(f"unknown device {device!r}", "results are measured on cpu, cuda or cuda:N",
                         "use --device cpu or --device cuda, or drop --device") from exc


def pick(store: str | None = None, budget: "Budget | None" = None, **constraints) -> "PickResult":
    """The best stored model under a budget (see ``dnnbench.analysis.pick``); ``result.exit_code`` is 3 when
    none fits. ``budget``: a ``Budget``, or its fields as keywords (which override its values): batch_size,
    the budgets in the CLI's units (max_latency_ms, min_throughput in images/s, max_memory_mb in MiB,
    max_energy_mj per image, max_power_w, min_top1 as a fraction or percent), where, objective, device,
    min_map (box mAP) and min_miou (fractions or percent; only that task's models are then candidates), task,
    setup ("any": every stored setup's models are candidates and the answer names model and setup; or one
    setup's readable name or fingerprint prefix; None: the setup with most cells on ``device``)."""
    from dnnbench.analysis.pick import Budget, pick as pick_frame

    budget = Budget.of(budget, **constraints)  # contradictions are refused before the store is read
    _check_setup_device(budget.device)
    df, _, where_text = _stored(store)
    return pick_frame(df, budget, store_where=where_text)


def report(store: str | None = None, out: str | None = None, device: str | None = None,
           setup: str | None = None) -> "ReportResult":
    """Write the HTML report (one self-contained file), its figures (PNG, SVG) and findings.json into ``out``.

    ``setup``: the setup whose figures and findings lead (its name or a fingerprint prefix; default: the
    one with most cells, on ``device`` if given)."""
    from dnnbench.report import build

    _check_setup_device(device)
    df, envs, where_text = _stored(store)
    out = out or DEFAULT_REPORT_DIR
    _check_out_dir(out, "--out")  # before seconds of drawing figures
    try:
        return build(df, envs, out, store_where=where_text, device=device, setup=setup)
    except OSError as exc:  # the folder became unwritable, or the disk filled up, while writing
        raise write_error(getattr(exc, "filename", None) or out, exc, "--out") from exc


@dataclass
class ImportResult:
    """What ``import_file`` did: the format read, the records built, how many were new in the store."""

    path: str
    format: str
    device_name: str
    records: list
    stored: int
    where: str

    @property
    def skipped(self) -> int:
        return len(self.records) - self.stored


def import_file(path: str, options: "Options | None" = None, *, store: str | None = None, fmt: str = "auto",
                replace: bool = False, study: str | None = None, **settings) -> ImportResult:
    """Read latencies measured on another device by its own tool (``dnnbench.store.imported``) into the
    store as that device's cells, all in one transaction: a bad file is one line and stores nothing.

    What the file may not say (``device_name``, which is required, ``model``, ``batch_size``, ``runtime``,
    ``precision``, ``threads``, ``device``) comes as an ``imported.Options`` or as keywords of the same names."""
    import dataclasses

    from dnnbench.core.config import with_options
    from dnnbench.store import check_writable, open_store
    from dnnbench.store.imported import Options, import_records

    if options is None and "device_name" not in settings:
        raise InputError("no device name given", "imported cells are that device's own setup",
                         "pass --device-name NAME (e.g. \"Pixel 8\")")
    opts = with_options(Options, options, settings, "import_file")
    if opts.resolve is None:
        opts = dataclasses.replace(opts, resolve=_known_bare_name)
    found, records = import_records(path, opts, fmt)  # everything is read and checked before the store opens
    with open_store(store) as st:
        check_writable(st)
        stored = st.put_many(records, study=study, replace=replace)
        return ImportResult(path, found, opts.device_name.strip(), records, stored, st.where)


def _known_bare_name(name: str) -> str | None:
    """``torchvision:NAME`` when NAME is a torchvision model (as `dnnbench bench NAME` reads it), else None."""
    from dnnbench.sources import torchvision_models

    return f"torchvision:{name}" if name in torchvision_models.catalogue() else None


__all__ += ["write_output", "write_error", "import_file", "ImportResult"]

_WRITE_WHY = {  # errno -> why, for the errors a user's output path causes
    errno.ENOENT: "its folder does not exist",
    errno.EISDIR: "it is a directory",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOSPC: "no space is left on the device",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.EEXIST: "a file of that name is in the way",
}


def write_error(path, exc: OSError, option: str) -> DnnbenchError:
    """The one-line error for an output path that cannot be written (``option``: the CLI option naming it)."""
    why = _WRITE_WHY.get(exc.errno) or f"{type(exc).__name__}: {exc.strerror or exc}"
    where = ("a folder you can write to (it is created if missing)" if option == "--out"
             else "a file path in an existing folder you can write to")
    return InputError(f"cannot write {path}", why, f"give {option} {where}, on a device with free space")


def _check_out_dir(out: str, option: str) -> None:
    """``out`` is a folder or can be made one: a one-line error now, not a traceback after the work.

    Nothing is created here (a store with no results must leave no empty folder behind).
    """
    import os

    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"cannot write the report into {out}", "it is a file, not a folder",
                         f"give {option} a folder (it is created if missing)")
    parent = os.path.abspath(out)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise write_error(out, OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)), option)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise write_error(out, OSError(errno.EACCES, os.strerror(errno.EACCES)), option)


def write_output(path: str, content: "str | bytes | Callable[[object], None]", option: str = "--output") -> None:
    """Write ``content`` (text, bytes, or a callable that writes into a binary file object) to ``path``.

    A path that cannot be written (missing folder, a directory, no permission, a full device) is one line
    naming ``option``. A regular file this call created is removed again when writing it fails.
    """
    import os

    existed = os.path.exists(path)
    try:
        with open(path, "wb") as fh:
            if callable(content):
                content(fh)
            else:
                fh.write(content.encode("utf-8") if isinstance(content, str) else content)
    except OSError as exc:
        if not existed and os.path.isfile(path):
            try:
                os.remove(path)  # a half-written file would pass for the whole table
            except OSError:
                pass
        raise write_error(path, exc, option) from exc


def export_model(model: str, runtime: str | None = None, precision: str = "fp32",
                 options: "ExportOptions | None" = None, *, on_progress: Callable[[str], None] | None = None,
                 **settings):
    """Write the deployable file of ``model`` under one (runtime, precision) with a manifest and a reference
    input/output (see ``latency.artifact``); how (batch size, folder, weights, calibration...) comes as a
    ``latency.artifact.ExportOptions`` or as keywords of the same names. Returns the ``Artifact``.

    ``out`` defaults to ``<model>-<runtime>-<precision>-b<batch>`` in the working folder; an existing folder that
    holds files is refused (an export never overwrites). Random weights unless ``weights`` is given.
    """
    import os
    import re

    from dnnbench.core.config import with_options
    from dnnbench.core.measurements import CellSpec
    from dnnbench.host import environment
    from dnnbench.latency import artifact

    o = with_options(artifact.ExportOptions, options, settings, "export_model")
    batch_size, out, calibration, calibration_count = o.batch_size, o.out, o.calibration, o.calibration_count
    check_batch_size(batch_size)
    check_form(o.form)
    device = check_device(o.device)
    configs, _ = runtime_configs(model, runtime, precision, device)
    if len(configs) != 1:
        raise InputError(f"an export writes one configuration, not {len(configs)}",
                         f"--runtime {runtime} --precision {precision} names {', '.join(' '.join(c) for c in configs)}",
                         "name one runtime and one precision")
    runtime, precision = configs[0]
    if precision != "int8" and (calibration or calibration_count):
        raise InputError("--calibration is for --precision int8 only", f"this export is {precision}",
                         "drop --calibration, or export --precision int8")
    if out is None:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(model).rsplit(":", 1)[-1].rsplit("/", 1)[-1]).strip("_") or "model"
        out = f"{name}-{runtime}-{precision}-b{batch_size}"
    _check_out_dir(out, "--out")
    if os.path.isdir(out) and os.listdir(out):
        raise InputError(f"{out} already holds files", "an export never overwrites",
                         "give --out a new or empty folder")
    say = on_progress or (lambda what: None)
    say(f"building {model}")
    if o.weights is None:
        lm = _bench_loader(str(model), "cpu", o.input_size, o.form)
    else:
        lm = load(model, device="cpu", weights=o.weights)
        size = _parse_input_size(o.input_size)
        if size is not None:
            lm.inputs = lm.inputs.with_image_size(*size)
        if o.form == "deploy":
            lm = deploy_form(lm, inplace=True)
    threads = o.threads or environment.default_threads()
    spec = CellSpec(lm.ref, batch_size, device, threads, runtime=runtime, precision=precision, task=lm.task,
                    form=o.form, calibration=calibration, calibration_count=calibration_count)
    return artifact.write(spec, lm, out, progress=say)
