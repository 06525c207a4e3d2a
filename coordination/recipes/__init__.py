"""Recipes written once over the backend primitives of :mod:`coordination.backends.base`."""
