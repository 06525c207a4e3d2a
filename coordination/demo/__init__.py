"""Demos run by ``coordination demo ...`` (see :mod:`coordination.demo.flash_sale`)."""
