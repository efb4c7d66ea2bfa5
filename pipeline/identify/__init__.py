"""Learning-rule identification from training observables (spec_ch5-6 part B).

Train a grid of networks under known rule classes (`grid`; each run is an ordinary
`pipeline.train.train` job, on the pipeline's stimuli or the modality-free `vectors` task),
measure per layer and checkpoint the statistics of weights, activations and activity change
(`statistics`, `observables`, under measurement limits from `measurement`), arrange them as
trajectories per (run, layer) (`features`), and ask classifiers (`classifiers`, `conv1d`)
which rule trained each one under the analyses of B.7 (`analyses`).
"""
