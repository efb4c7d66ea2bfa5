"""Medial entorhinal cortex: trajectories, spatial rate maps and cell-type scores (spec §3)."""
