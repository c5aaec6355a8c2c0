"""Architectures of the paper, one module each."""
from .base import Model, Segment
from .linear_estimator import LinearEstimator
from .linear_ffn import LinearFFN
from .lrnn import LRNN
from .shallow_relu import ShallowReLU

__all__ = ["Model", "Segment", "LinearEstimator", "LRNN", "LinearFFN", "ShallowReLU"]
