"""Model-to-brain and animal-to-animal comparison: splits, mappings and the noise-corrected score."""
