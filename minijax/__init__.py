"""minijax: JAX/Flax image classification with variable input channels."""

__version__ = "0.1.0"
