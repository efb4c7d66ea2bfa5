"""Neural and stimulus data sources, and the NeuralAssembly format they all produce.

One module per dataset, named after its config key and holding the functions its rules call
(rule name = CLI verb = function): `synthetic_mouse`, `allen_neuropixels`, `allen_ophys`,
`allen_psailamul`, `majajhong2015`, `horikawa2017`, `mec_openfield`. Shared by them: `assembly`
(schema, I/O, stacking), `reliability` (trial halves, split-half reliability), `natural_scenes`
(the Allen images), `running` (running modulation), `hdf5` (field readers), `stimuli` (the
procedural stimulus sets) and `fetch` (verified, resumable downloads).
"""
