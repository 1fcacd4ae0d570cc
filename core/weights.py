"""Weights as the inference side holds them: numpy arrays, whatever they came from (a torch
state_dict in the trainer, safetensors.numpy in the daemon), checked against the shapes a
network of the checkpoint's architecture has. Nothing here imports torch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def as_numpy(x: Any) -> np.ndarray:
    """A torch tensor (duck-typed: no torch import) or array-like as a numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def numpy_tensors(tensors: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {k: as_numpy(v) for k, v in tensors.items()}


def check_shapes(tensors: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]]) -> None:
    """ValueError naming every missing, unexpected and misshapen tensor."""
    problems = [f"missing {k}" for k in expected if k not in tensors]
    problems += [f"unexpected {k}" for k in tensors if k not in expected]
    problems += [
        f"{k} has shape {tuple(as_numpy(tensors[k]).shape)}, expected {shape}"
        for k, shape in expected.items()
        if k in tensors and tuple(as_numpy(tensors[k]).shape) != tuple(shape)
    ]
    if problems:
        raise ValueError("; ".join(problems))
