r"""Helpers of the adapter side (Zuko's ``utils`` names that exist so far)."""

from .functional import ModuleBoundDistribution, from_zuko, to_functional
from .module import SpecModule, module_trees

__all__ = ["ModuleBoundDistribution", "SpecModule", "from_zuko", "module_trees", "to_functional"]
