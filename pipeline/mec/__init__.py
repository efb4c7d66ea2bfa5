"""Medial entorhinal cortex (spec §3): trajectories and place cells, path-integrator training,
spatial rate maps of animals and model units, controls, cell-type scores, comparisons, decoding
and knockouts. The networks are in `pipeline.models.path_integrator`, their losses in
`pipeline.objectives.path_integration`."""
