"""Goal-driven modeling pipeline: data → models → activations → consistency → figures."""

__version__ = "0.1.0"
