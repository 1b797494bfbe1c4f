r"""``zuko.mixtures`` names: Gaussian mixture models."""

from .flows import GMM

__all__ = ["GMM"]
