"""Measured top-1/top-5 on a validation set on disk, with a DataLoader whose workers decode the images.

The api layer hands over the loaded model (module, preprocessing transform, class names) and a checked
``AccuracyConfig``; this layer never imports ``dnnbench.sources``. Corrupt images are counted and skipped, never fatal.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime, timezone

import torch

from dnnbench.core.accuracy import Accuracy, AccuracyConfig, hits_string, wilson_interval
from dnnbench.core.errors import DatasetError, DnnbenchError, InputError
from dnnbench.core.specs import LoadedModel
from dnnbench.core.version import __version__
from dnnbench.evaluate import imagedata
from dnnbench.evaluate.imagedata import (MAX_LISTED, ImageFiles, collate, default_transform, default_workers,
                                         first_preprocessed, timed_batches)

TOP_K = 5
DATA_WAIT_WARN = 0.2  # waiting this share of the wall time for images means loading held inference back
Progress = Callable[[int, int, int, float], None]  # (files done, files total, images scored, elapsed s)


def logits_of(output) -> torch.Tensor:
    """The (batch, classes) scores from what a classifier returns: a tensor, a tuple, a dict or an object."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and "logits" in output:
        return output["logits"]
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise InputError(f"the model returned a {type(output).__name__}", "accuracy needs (batch, classes) scores",
                     "make the model return a logits tensor")


def _probe(module: torch.nn.Module, samples, transform, device: str) -> tuple[int, list[int]]:
    """Run the first decodable image through transform and model: (number of outputs, its input shape)."""
    found = first_preprocessed([path for path, _ in samples], transform)
    if found is None:
        raise DatasetError(f"none of the first {min(64, len(samples))} images could be decoded",
                           "they are not readable image files", "check that --data holds JPEG/PNG images")
    _, x = found
    try:
        with torch.inference_mode():
            out = logits_of(module(x.unsqueeze(0).to(device)))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"the model rejected a preprocessed image of shape {list(x.shape)}",
                         f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}",
                         "give the model a preprocess transform that produces its input size") from exc
    if out.dim() != 2:
        raise InputError(f"the model returned scores of shape {list(out.shape)}",
                         "accuracy needs (batch, classes) scores", "make the model return a logits tensor")
    return int(out.shape[1]), list(x.shape)


def measure(loaded: LoadedModel, data_dir: str, config: AccuracyConfig, *, weights: str | None = None,
            notes: list[str] | None = None, on_progress: Progress | None = None):
    """The quality of ``loaded`` by its task: top-1/top-5, box mAP or mIoU (see each evaluator)."""
    from dnnbench.core.specs import TASKS

    task = loaded.task
    kw = dict(weights=weights, notes=notes, on_progress=on_progress)
    if task == "classification":
        if config.annotations:
            raise InputError("--annotations is for detection and segmentation models",
                             f"{loaded.ref} is a classification model", "use --labels for a flat folder of images")
        return measure_accuracy(loaded, data_dir, config, **kw)
    if config.labels:
        raise InputError(f"--labels is for classification, and {loaded.ref} is a {task} model",
                         "detection reads a COCO annotations JSON, segmentation a mask folder",
                         "pass --annotations instead")
    if task in ("detection", "instance_segmentation", "keypoint_detection"):
        from dnnbench.evaluate.detection import measure_detection

        return measure_detection(loaded, data_dir, config, **kw)
    if task == "segmentation":
        from dnnbench.evaluate.segmentation import measure_segmentation

        return measure_segmentation(loaded, data_dir, config, **kw)
    if task in TASKS:
        raise InputError(f"measured accuracy of {task} models is not implemented yet",
                         f"{loaded.ref} is a {task} model ({TASKS[task]}); dnnbench scores classification "
                         "(top-1), detection (box mAP) and segmentation (mIoU)",
                         "use its published figure (dnnbench accuracy MODEL without --data)")
    raise InputError(f"{loaded.ref} has an unknown task {task!r}", f"tasks are {', '.join(TASKS)}",
                     "set the model's task to one of them")


def measure_accuracy(loaded: LoadedModel, data_dir: str, config: AccuracyConfig, *, weights: str | None = None,
                     notes: list[str] | None = None, on_progress: Progress | None = None) -> Accuracy:
    """Evaluate ``loaded`` on the images under ``data_dir``; see ``imagedata`` for layouts and class maps.

    ``config`` was checked when it was built; ``weights``: the label stored for the weights (default: the
    loaded model's own); ``notes``: the caller's, kept first in the record.
    """
    return _evaluate(loaded, data_dir, config, [], weights=weights, notes=notes, on_progress=on_progress)[0]


def measure_configs(loaded: LoadedModel, data_dir: str, config: AccuracyConfig, configs: list[tuple[str, str]], *,
                    weights: str | None = None, notes: list[str] | None = None,
                    on_progress: Progress | None = None) -> list:
    """Top-1/top-5 of eager fp32 and of each (runtime, precision) of ``configs`` on the same images, in one pass.

    The first record is eager fp32's (the reference); then one per other configuration, in the order given: an
    ``Accuracy`` with its ``paired`` comparison against eager fp32, or a ``ConfigUnavailable`` saying why not
    (see ``evaluate.configs``). ``config.calibration``: static int8's calibration folder.
    """
    if loaded.task != "classification":
        raise InputError(f"--runtime/--precision accuracy is for classifiers, and {loaded.ref} is a {loaded.task} model",
                         "the paired comparison is of per-image top-1 correctness",
                         "drop --runtime/--precision (eager fp32), or give a classification model")
    if config.annotations:
        raise InputError("--annotations is for detection and segmentation models",
                         f"{loaded.ref} is a classification model", "use --labels for a flat folder of images")
    ref, others = _evaluate(loaded, data_dir, config, configs, weights=weights, notes=notes, on_progress=on_progress)
    return [ref, *others]


def _evaluate(loaded: LoadedModel, data_dir: str, config: AccuracyConfig, configs: list[tuple[str, str]], *,
              weights: str | None = None, notes: list[str] | None = None,
              on_progress: Progress | None = None) -> tuple[Accuracy, list]:
    limit, batch_size, device, seed = config.limit, config.batch_size, config.device, config.seed
    workers = default_workers() if config.workers is None else config.workers
    if not loaded.inputs.is_single_image:
        raise InputError(f"{loaded.ref} does not take one image", "accuracy evaluates image classifiers",
                         "give a model whose input is one CxHxW image")
    notes = list(notes or [])
    transform, preprocess_source = _preprocess(loaded, notes)
    # A source that failed to give the model's preprocessing or class names (timm) hands over a stand-in that
    # carries the error: raised here, before any work, instead of a default transform or a guessed class order.
    unresolved = getattr(transform, "unresolved", None)
    if isinstance(unresolved, DnnbenchError):
        raise unresolved
    module = loaded.module
    module.eval()
    module.to(device)
    listing = imagedata.list_images(data_dir, config.labels)  # data errors first, before any compute
    num_outputs, input_shape = _probe(module, listing.files, transform, device)
    images = imagedata.assign(listing, num_outputs, loaded.class_names)
    notes.extend(images.notes)
    samples = images.samples
    if limit is not None and limit >= len(samples):
        notes.append(f"--limit {limit} is not below the {len(samples)} files: all are evaluated")
    elif limit is not None:
        samples = imagedata.stratified_subset(samples, limit, seed)
        per_class = len(samples) / max(1, images.classes)
        notes.append(f"--limit {limit}: a class-stratified subset of {len(samples)} of {len(images.samples)} files "
                     f"(~{per_class:.1f} per class, seed {seed})")
        if limit < images.classes:
            notes.append(f"--limit {limit} is below the {images.classes} classes: some classes have no image")
    k = min(TOP_K, num_outputs)
    if k < TOP_K:
        notes.append(f"top5 is top-{k}: the model has only {num_outputs} outputs"
                     + (" (every image counts as correct, by construction)" if k == num_outputs else ""))

    evaluator = None
    if configs:
        from dnnbench.evaluate.configs import ConfigEvaluator, calibration_for

        calibration = None
        if any(p == "int8" for _, p in configs):
            calibration = calibration_for([p for p, _ in samples], [p for p, _ in listing.files], config.calibration,
                                          config.calibration_count, seed)
        evaluator = ConfigEvaluator(loaded, module, list(configs), batch_size, device, k, calibration)
    try:
        return _loop(loaded, data_dir, config, samples, images, transform, preprocess_source, module, input_shape,
                     num_outputs, k, workers, notes, weights, on_progress, evaluator)
    finally:
        if evaluator is not None:
            evaluator.close()


def _loop(loaded, data_dir, config, samples, images, transform, preprocess_source, module, input_shape, num_outputs,
          k, workers, notes, weights, on_progress, evaluator) -> tuple[Accuracy, list]:
    limit, batch_size, device, seed = config.limit, config.batch_size, config.device, config.seed
    dataset = ImageFiles(samples, transform)
    if workers > 0 and not _workers_can_start(dataset):
        notes.append(f"the preprocess transform cannot be pickled for {torch.multiprocessing.get_start_method()!r} "
                     "worker processes: images were decoded in the main process (--workers 0)")
        workers = 0
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
        collate_fn=collate, pin_memory=device.startswith("cuda"),
        prefetch_factor=4 if workers > 0 else None, persistent_workers=False)
    top1 = top5 = scored = done = 0
    hits1: list[bool] = []  # per image, in evaluated order: the raw samples of the paired statistics
    corrupt: list[str] = []
    classes_seen: set[int] = set()
    forward_s = wait_s = 0.0
    total = len(samples)
    start = time.perf_counter()
    if on_progress:
        on_progress(0, total, 0, 0.0)
    for batch, waited_s in timed_batches(loader):
        wait_s += waited_s
        t1 = time.perf_counter()
        x, y, bad, n = batch
        corrupt.extend(samples[i][0] for i, _ in bad)
        done += n
        if x is not None:
            if list(x.shape[1:]) != input_shape:
                raise InputError(f"the transform gave images of shape {list(x.shape[1:])} after {input_shape}",
                                 "every image must come out at one size", "give a transform that crops to a fixed size")
            with torch.inference_mode():
                logits = logits_of(module(x.to(device, non_blocking=True)))
                hits = logits.topk(k, dim=1).indices.eq(y.to(device).unsqueeze(1))
                top1 += int(hits[:, 0].sum())
                top5 += int(hits.any(dim=1).sum())
                hits1.extend(hits[:, 0].tolist())
            scored += len(y)
            classes_seen.update(y.tolist())
        forward_s += time.perf_counter() - t1
        if evaluator is not None and x is not None:  # the same decoded batch, through every other configuration
            with torch.inference_mode():
                evaluator.batch(x, y, logits)
        if on_progress:
            on_progress(done, total, scored, time.perf_counter() - start)
    wall_s = time.perf_counter() - start
    if scored == 0:
        raise DatasetError(f"none of the {total} images in {data_dir} could be decoded",
                           f"first: {corrupt[0] if corrupt else '-'}", "check that --data holds JPEG/PNG images")
    if corrupt:
        notes.append(f"{len(corrupt)} file(s) could not be decoded and were skipped (first: {corrupt[0]})")
    if wall_s > 0 and wait_s / wall_s > DATA_WAIT_WARN and total >= 4 * batch_size:  # not worker start-up alone
        notes.append(f"data loading held inference back: {100 * wait_s / wall_s:.0f} % of the time was spent waiting "
                     f"for decoded images; more --workers (now {workers}) or a faster disk would raise images/s")
    if evaluator is not None and evaluator.runs:
        notes.append(f"wall_s and images_per_s are of the whole pass (eager fp32 and {len(evaluator.runs)} other "
                     "configuration(s) on every batch); forward_s and forward_per_image_s are each configuration's own")
    t1_lo, t1_hi = wilson_interval(top1, scored)
    t5_lo, t5_hi = wilson_interval(top5, scored)
    ref = Accuracy(
        model=loaded.ref, weights=(loaded.weights or "as given") if weights is None else weights,
        data_dir=os.path.abspath(data_dir), layout=images.layout,
        class_map=images.class_map, preprocess=imagedata.describe_transform(transform),
        preprocess_source=preprocess_source, classes=len(classes_seen), num_outputs=num_outputs,
        images=scored, corrupt_images=len(corrupt), top1=top1 / scored, top5=top5 / scored, top5_k=k,
        top1_correct=top1, top5_correct=top5, top1_ci_low=t1_lo, top1_ci_high=t1_hi,
        top5_ci_low=t5_lo, top5_ci_high=t5_hi, batch_size=batch_size, workers=workers, device=device,
        threads=torch.get_num_threads(), wall_s=wall_s, images_per_s=scored / wall_s,
        forward_s=forward_s, data_wait_s=wait_s, limit=limit, subset_seed=seed if limit is not None else None,
        corrupt_files=corrupt[:MAX_LISTED], reported=loaded.reported, tool_version=__version__,
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"), notes=notes,
        top1_hits=hits_string(hits1), forward_per_image_s=forward_s / scored)
    return ref, (evaluator.results(ref) if evaluator is not None else [])


def _preprocess(loaded: LoadedModel, notes: list[str]) -> tuple[object, str]:
    """(transform, where it came from): the model's own, else resize + centre crop + ImageNet mean/std."""
    if loaded.preprocess is not None:
        return loaded.preprocess, loaded.preprocess_source or ""
    notes += list(loaded.notes)  # e.g. "no example inputs: assuming 3x224x224" sets the crop size
    _, h, w = loaded.inputs.tensors[0].shape
    return default_transform(h, w), (f"default: resize shorter side to {round(min(h, w) / 0.875)}, centre-crop "
                                     f"{h}x{w}, ImageNet mean/std (the model defines no preprocessing)")


def _workers_can_start(dataset) -> bool:
    """Forked workers inherit the dataset; spawned ones (macOS, Windows) need it pickled, lambdas and all."""
    if torch.multiprocessing.get_start_method(allow_none=False) == "fork":
        return True
    import pickle

    try:
        pickle.dumps(dataset)
    except Exception:
        return False
    return True


