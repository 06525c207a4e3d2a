"""Demos run by ``coordination demo ...`` (see :mod:`coordination.lab.demo.flash_sale`)."""
