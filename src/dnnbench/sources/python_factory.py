"""``python:pkg.module:factory`` and ``python:path/to/file.py:factory`` models.

The factory is called with no arguments and returns a module, or ``(module, example_inputs)`` where
example_inputs is a tensor, a tuple of tensors or a dict of tensors whose dim 0 is the batch.
For ``accuracy`` a factory may carry two attributes: ``factory.preprocess`` (PIL image -> CxHxW tensor)
and ``factory.class_names`` (its classes in output-index order, e.g. wnids); a checkpoint saved as
``{"state_dict": ..., "class_names": [...]}`` provides class_names too, and wins. ``factory.task`` names
what the model does (one of ``core.specs.TASKS``; default "classification").
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import torch

from dnnbench.core.errors import ModelBuildError, UnknownModelError
from dnnbench.core.refs import ModelRef
from dnnbench.core.specs import TASKS, InputSpec, LoadedModel
from dnnbench.sources.checkpoints import load_checkpoint

DEFAULT_IMAGE = (3, 224, 224)


def _import(target: str):
    if target.endswith(".py"):
        path = os.path.abspath(target)
        if not os.path.isfile(path):
            raise UnknownModelError(f"model file {target} does not exist", "no such file", "check the path")
        mod_name = "dnnbench_user_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except SystemExit as exc:
            raise _exited(f"importing {target}", exc) from None
        except Exception as exc:
            raise ModelBuildError(f"importing {target} failed", f"{type(exc).__name__}: {exc}",
                                  "fix the error in that file") from exc
        return module
    try:
        return importlib.import_module(target)
    except SystemExit as exc:
        raise _exited(f"importing {target}", exc) from None
    except ModuleNotFoundError as exc:
        raise UnknownModelError(f"cannot import module {target!r}", str(exc),
                                "check the module path, or give a file: python:path/to/file.py:factory") from exc
    except Exception as exc:
        raise ModelBuildError(f"importing {target} failed", f"{type(exc).__name__}: {exc}",
                              "fix the error in that module") from exc


def _exited(who: str, exc: SystemExit) -> ModelBuildError:
    # SystemExit is no Exception: uncaught, it would end dnnbench with the factory's code and no word of why
    code = exc.code if exc.code is None or isinstance(exc.code, int) else repr(exc.code)
    return ModelBuildError(f"{who} called sys.exit({code})", "building a model must return it, not end the process",
                           "remove the sys.exit call; raise an exception to report a failure")


def load(ref: ModelRef, device: str = "cpu", weights: str | None = None, download: bool = False) -> LoadedModel:
    mod = _import(ref.target)
    factory = getattr(mod, ref.name, None)
    if factory is None or not callable(factory):
        names = sorted(n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n)))
        raise UnknownModelError(f"{ref.target} has no factory {ref.name!r}",
                                "no callable of that name in it",
                                "callables there: " + (", ".join(names[:8]) or "none"))
    try:
        made = factory()
    except SystemExit as exc:
        raise _exited(f"the factory {ref}", exc) from None
    except Exception as exc:
        raise ModelBuildError(f"factory {ref} raised", f"{type(exc).__name__}: {exc}",
                              "fix the factory so that it returns a torch.nn.Module") from exc
    example = None
    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], torch.nn.Module):
        made, example = made
    if not isinstance(made, torch.nn.Module):
        raise ModelBuildError(f"factory {ref} returned a {type(made).__name__}",
                              "a factory returns a torch.nn.Module or (module, example_inputs)",
                              "return the model (and optionally its example inputs)")
    notes = []
    if example is None:
        inputs = InputSpec.image(*DEFAULT_IMAGE)
        notes.append("the factory gave no example inputs: assuming one 3x224x224 image; pass --input-size to change it")
    else:
        inputs = InputSpec.from_examples(example)
    class_names = _names(getattr(factory, "class_names", None), ref)
    if weights is not None:
        class_names = load_checkpoint(made, weights, str(ref)) or class_names
    preprocess = getattr(factory, "preprocess", None)
    if preprocess is not None and not callable(preprocess):
        raise ModelBuildError(f"{ref}.preprocess is a {type(preprocess).__name__}",
                              "it must be a callable taking a PIL image and returning a CxHxW tensor",
                              "set factory.preprocess to a transform, e.g. a torchvision Compose")
    task = getattr(factory, "task", None) or "classification"  # ``factory.task = "detection"``: see core.specs.TASKS
    if task not in TASKS:
        raise ModelBuildError(f"{ref}.task is {task!r}", f"tasks are {', '.join(TASKS)}",
                              "set factory.task to one of them, e.g. factory.task = 'detection'")
    return LoadedModel(str(ref), made, inputs, weights, None, notes, preprocess=preprocess,
                       preprocess_source=f"{ref}.preprocess" if preprocess is not None else None,
                       class_names=class_names, task=task)


def _names(names, ref: ModelRef) -> list[str] | None:
    """A factory's ``class_names`` attribute: its classes in output-index order (wnids or folder names)."""
    if names is None:
        return None
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ModelBuildError(f"{ref}.class_names is not a list of strings", f"it is a {type(names).__name__}",
                              "set factory.class_names = ['n01440764', ...] in output-index order")
    return list(names)
