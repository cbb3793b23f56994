"""`dnnbench export MODEL`: the deployable file of one configuration, with a manifest to run it elsewhere.

The configuration is prepared exactly as a bench cell prepares it (``runtimes.prepare``: the same export,
lowering, quantization and calibration), its file(s) written by the runtime's ``Prepared.save``, and beside
them ``manifest.json`` (what to feed and what comes out: every input's and output's name, shape and dtype,
files with sizes and sha256) and a reference input with the output THIS artifact gives for it, as ``.npy``
files that any runtime on any device can read. A device that runs the artifact on the reference input and gets
the reference output (to the tolerance the manifest gives) runs what dnnbench measured.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import torch

from dnnbench import runtimes
from dnnbench.core.errors import InputError, UnavailableError
from dnnbench.core.measurements import CellSpec
from dnnbench.core.version import __version__
from dnnbench.latency.cell import to_device

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ExportOptions:
    """How ``dnnbench export MODEL`` writes one configuration (everything but the model, runtime, precision)."""

    batch_size: int = 1
    out: str | None = None  # default: MODEL-RUNTIME-PRECISION-bN in the working folder
    device: str = "cpu"
    threads: int | None = None  # default: the physical cores
    weights: str | None = None  # default: random weights
    input_size: object = None  # "H[,W]" or (H, W)
    form: str = "train"
    calibration: str = ""  # int8 only: a folder of images
    calibration_count: int = 0


@dataclass
class Artifact:
    """What ``write`` wrote: the folder, the manifest (as written) and its files."""

    out_dir: str
    manifest: dict
    files: list[str] = field(default_factory=list)

    @property
    def artifact_bytes(self) -> int:
        return sum(f["bytes"] for f in self.manifest["artifact_files"])


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tensor_entry(name: str, t: torch.Tensor, out_dir: str) -> dict:
    import numpy as np

    file = f"reference_{name}.npy"
    np.save(os.path.join(out_dir, file), t.detach().cpu().contiguous().numpy())
    return {"name": name, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "file": file}


def write(spec: CellSpec, lm, out_dir: str, progress=None) -> Artifact:
    """Prepare ``lm`` under ``spec``'s runtime and precision, write its deployable file(s) and the manifest into
    ``out_dir`` (which must not exist or be empty). Raises a one-line DnnbenchError for what cannot be done."""
    from torch.utils._pytree import tree_flatten

    say = progress or (lambda what: None)
    torch.set_num_threads(spec.threads)
    device = torch.device(spec.device)
    module = lm.module.eval()
    gen = torch.Generator(device="cpu").manual_seed(spec.seed)
    args, kwargs = lm.inputs.make(spec.batch_size, "cpu", gen)
    args, kwargs = to_device((args, kwargs), device)
    leaves, _ = tree_flatten((args, kwargs))
    if not all(isinstance(t, torch.Tensor) for t in leaves):
        raise InputError(f"{spec.model} takes inputs that are not tensors", "an artifact's inputs are tensors",
                         "export a model whose inputs are tensors")
    say(f"preparing {spec.runtime} {spec.precision} (export, lowering, quantization)")
    prepared = runtimes.prepare(spec, module, args, kwargs, device, owns_module=True, lm=lm)
    try:
        if prepared.save is None:
            raise UnavailableError(f"--runtime {spec.runtime} cannot write a deployable file",
                                   f"the {spec.runtime} runtime does not say what its file is",
                                   "choose another --runtime")
        os.makedirs(out_dir, exist_ok=True)
        say(f"writing the artifact into {out_dir}")
        paths = prepared.save(out_dir)
        with torch.inference_mode():
            outputs = prepared.outputs()
        equivalence = None
        if prepared.reference is not None:
            equivalence = runtimes.compare(prepared.reference, outputs, prepared.reference_name, spec.task).to_dict()
        files = [{"file": os.path.relpath(p, out_dir), "bytes": os.path.getsize(p), "sha256": _sha256(p)}
                 for p in paths]
        inputs = [_tensor_entry(f"input_{i}", t, out_dir) for i, t in enumerate(args)]
        inputs += [_tensor_entry(k, t, out_dir) for k, t in kwargs.items()]
        outs = [_tensor_entry(f"output_{i}", t, out_dir) for i, t in enumerate(outputs)]
        manifest = {
            "dnnbench_version": __version__,
            "model": spec.model,
            "weights": lm.weights or "random (timing, memory and size are the model's; its outputs are not a "
                                     "trained model's)",
            "task": spec.task,
            "runtime": spec.runtime,
            "precision": spec.precision,
            "batch_size": spec.batch_size,
            "device": spec.device,
            "artifact_files": files,
            "artifact_bytes": sum(f["bytes"] for f in files),
            "inputs": inputs,
            "outputs": outs,
            "reference": ("reference_input_*.npy fed to this artifact on the machine that wrote it gave "
                          "reference_output_*.npy; another runtime or device should reproduce them to about "
                          "max_abs_diff of the equivalence below (this configuration vs eager fp32)"),
            "equivalence_vs_eager_fp32": equivalence,
            "details": prepared.details,
            "notes": prepared.notes,
            "warnings": [w.to_dict() for w in prepared.warnings],
        }
        with open(os.path.join(out_dir, MANIFEST), "w") as fh:
            json.dump(manifest, fh, indent=2, sort_keys=True, default=str)
        written = [*(os.path.join(out_dir, f["file"]) for f in files),
                   *(os.path.join(out_dir, e["file"]) for e in inputs + outs), os.path.join(out_dir, MANIFEST)]
        return Artifact(out_dir, manifest, written)
    finally:
        prepared.close()
