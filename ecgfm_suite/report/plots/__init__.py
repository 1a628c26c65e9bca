"""Figures of the analyses that keep their drawing in a module of their own (``figures.PLOTS``)."""
