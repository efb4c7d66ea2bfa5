"""Neural and stimulus data sources, and the NeuralAssembly format they all produce."""
