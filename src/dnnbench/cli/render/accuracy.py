"""Measured and published accuracy."""

from __future__ import annotations

from rich.table import Table

from dnnbench.cli.output import err, out
from dnnbench.core import units as u


def reported_line(rep) -> str:
    if rep is None:
        return "accuracy: none (no published figure for this source)"
    if rep.top1 is None:
        return f"accuracy: none — {rep.note or 'not published'} ({rep.source}, {rep.weights})"
    return f"top-1 {u.pct(rep.top1, 2)}, top-5 {u.pct(rep.top5, 2)} ({rep.source}, {rep.weights})"


def published(model: str, rep) -> None:
    out.print(f"{model}: published {reported_line(rep)}")
    out.print("pass --data DIR to measure it on your own validation images")


class images_progress:
    """A rich progress bar on stderr with images/s; silent when stderr is not a terminal."""

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=err, transient=True,
                            disable=not err.is_terminal)
        self.bar.__enter__()
        self.task = self.bar.add_task("loading model and listing images", total=None, rate="")

        def update(done, total, scored, elapsed):
            rate = f"{scored / elapsed:.1f} images/s" if elapsed > 0 and scored else ""
            self.bar.update(self.task, description="evaluating", completed=done, total=total, rate=rate)

        return update

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)


def accuracy(a) -> None:
    t = Table(title=f"{a.model} — measured on {a.images:,} images of {a.data_dir}", show_header=False,
              title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("top-1", f"{u.pct(a.top1, 2)}  (95 % CI {u.pct(a.top1_ci_low, 2)} – {u.pct(a.top1_ci_high, 2)}; "
                       f"{a.top1_correct:,} / {a.images:,})")
    k = "top-5" if a.top5_k == 5 else f"top-5 (top-{a.top5_k})"
    t.add_row(k, f"{u.pct(a.top5, 2)}  (95 % CI {u.pct(a.top5_ci_low, 2)} – {u.pct(a.top5_ci_high, 2)}; "
                 f"{a.top5_correct:,} / {a.images:,})")
    t.add_row("published", reported_line(a.reported))
    t.add_row("weights", a.weights)
    t.add_row("images", f"{a.images:,} scored, {a.corrupt_images:,} corrupt (skipped), {a.classes} classes"
                        + (f", --limit {a.limit}" if a.limit else ""))
    t.add_row("data", f"{a.layout}; classes: {a.class_map}")
    t.add_row("preprocess", f"{a.preprocess}  [{a.preprocess_source}]")
    t.add_row("throughput", f"{a.images_per_s:.1f} images/s  (batch {a.batch_size}, {a.workers} workers, "
                            f"{a.threads} threads, {a.device}; waited for data {a.data_wait_s:.1f} s of {a.wall_s:.1f} s)")
    out.print(t)
    for note in a.notes:
        out.print(f"note: {note}")


def _ci(value, lo, hi) -> str:
    if value is None:
        return "unavailable"
    return f"{u.pct(value, 2)}  (95 % CI {u.pct(lo, 2)} – {u.pct(hi, 2)})" if lo is not None else u.pct(value, 2)


def _tail(t: Table, a, noun: str) -> None:
    t.add_row("published", reported_line(a.reported))
    t.add_row("weights", a.weights)
    t.add_row("preprocess", f"{a.preprocess}  [{a.preprocess_source}]")
    t.add_row("throughput", f"{a.images_per_s:.1f} {noun}/s  (batch {a.batch_size}, {a.workers} workers, "
                            f"{a.threads} threads, {a.device}; waited for data {a.data_wait_s:.1f} s of {a.wall_s:.1f} s)")
    out.print(t)
    for name, why in a.unavailable.items():
        out.print(f"{name}: {why}")
    for note in a.notes:
        out.print(f"note: {note}")


def detection(a) -> None:
    """A detector's box mAP, and mask or keypoint mAP for those tasks (DetectionAccuracy)."""
    what = {"instance_segmentation": "box and mask mAP", "keypoint_detection": "box and keypoint mAP"}.get(a.task, "box mAP")
    t = Table(title=f"{a.model} — {what} on {a.images:,} images of {a.data_dir}", show_header=False,
              title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("box mAP@[.5:.95]", _ci(a.box_map, a.box_map_ci_low, a.box_map_ci_high))
    t.add_row("box mAP@.5", _ci(a.box_map50, a.box_map50_ci_low, a.box_map50_ci_high))
    if a.task == "instance_segmentation":
        t.add_row("mask mAP@[.5:.95]", _ci(a.mask_map, a.mask_map_ci_low, a.mask_map_ci_high))
        t.add_row("mask mAP@.5", _ci(a.mask_map50, a.mask_map50_ci_low, a.mask_map50_ci_high))
    if a.task == "keypoint_detection":
        t.add_row("keypoint mAP@[.5:.95]", _ci(a.kp_map, a.kp_map_ci_low, a.kp_map_ci_high)
                  + (f"; {a.ground_truth_keypoint_people:,} people with keypoints"
                     if a.ground_truth_keypoint_people is not None else ""))
        t.add_row("keypoint mAP@.5", _ci(a.kp_map50, a.kp_map50_ci_low, a.kp_map50_ci_high))
    t.add_row("images", f"{a.images:,} scored, {a.corrupt_images:,} corrupt (skipped), {a.images_missing:,} of the "
                        f"annotations not in --data" + (f", --limit {a.limit}" if a.limit else ""))
    t.add_row("boxes", f"{a.ground_truth_boxes:,} ground truth in {a.categories} categor{'y' if a.categories == 1 else 'ies'}, "
                       f"{a.detections:,} detections scored")
    t.add_row("annotations", f"{a.annotations}; categories {a.category_map}")
    t.add_row("interval", f"{a.resamples} bootstrap resamples of the images (pycocotools accumulate)")
    _tail(t, a, "images")


def segmentation(a) -> None:
    """A segmentation model's mIoU and pixel accuracy (SegmentationAccuracy)."""
    t = Table(title=f"{a.model} — mIoU on {a.images:,} images of {a.data_dir}", show_header=False,
              title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("mIoU", _ci(a.miou, a.miou_ci_low, a.miou_ci_high) + f"; {a.classes} of {a.num_outputs} classes")
    t.add_row("pixel accuracy", _ci(a.pixel_acc, a.pixel_acc_ci_low, a.pixel_acc_ci_high)
              + f"; {a.labelled_pixels:,} labelled pixels")
    t.add_row("images", f"{a.images:,} scored, {a.corrupt_images:,} corrupt (skipped), {a.unpaired_images:,} "
                        f"without a mask" + (f", --limit {a.limit}" if a.limit else ""))
    t.add_row("masks", f"{a.masks_dir} (255 = ignore)")
    t.add_row("interval", f"{a.resamples} bootstrap resamples of the images")
    _tail(t, a, "images")
