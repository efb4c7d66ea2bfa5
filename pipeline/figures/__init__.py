"""Figures, one module per figure family; each function reads result files and writes one figure."""
