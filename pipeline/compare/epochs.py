"""Which checkpoints a stage reads: the `epochs` grammar shared by predictivity and geometry.

Its own module so a light job (geometry) reads it without importing the consistency engine.
"""


def select_epochs(activations, epochs):
    """The activations of the checkpoints to use.

    Parameters
    ----------
    activations : xarray.Dataset
        With dim and coord `epoch`.
    epochs : "all", "final", "ends" or list of int
        Every stored epoch, the last one, the first and the last, or these epoch numbers.
    """
    stored = [int(e) for e in activations["epoch"].values]
    if isinstance(epochs, str):
        choices = {"all": stored, "final": stored[-1:], "ends": sorted({stored[0], stored[-1]})}
        if epochs not in choices:
            raise ValueError(f"epochs must be 'all', 'final', 'ends' or a list of ints; got {epochs!r}")
        wanted = choices[epochs]
    else:
        wanted = sorted({int(e) for e in epochs})
        missing = sorted(set(wanted) - set(stored))
        if missing:
            raise ValueError(f"epochs {missing} are not in the activations (stored: {stored})")
    return activations if wanted == stored else activations.sel(epoch=wanted)
