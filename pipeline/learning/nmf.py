"""Non-negative matrix factorisation features under a linear readout (spec §C.3, project P3).

Lee & Seung 1999 (Nature 401: 788) and 2001 (NIPS 13, "Algorithms for NMF"): non-negative
data X (image, pixel) ≈ codes (image, component) @ components (component, pixel), fitted by
multiplicative updates (MU) that never increase the objective:

    Euclidean, ½‖X − WH‖²:   W ← W ⊙ (X Hᵀ) / (W H Hᵀ),           H ← H ⊙ (Wᵀ X) / (Wᵀ W H)
    KL, D(X ‖ WH):           W ← W ⊙ ((X / WH) Hᵀ) / (1 Hᵀ),      H ← H ⊙ (Wᵀ (X / WH)) / (Wᵀ 1)

with W = codes and H = components, in scikit-learn's orientation (X is image × pixel; the
spec's V = X ᵀ). `fit_nmf` alternates them as `sklearn.decomposition.NMF(solver="mu")` does
(codes first, the same ε guards), so on the same data and initial factors the two agree to
rounding. No column normalisation of the basis (the Nature paper's extra step): it is not
part of the 2001 algorithm whose objective is monotone.

As a model (`NMFNet`, what rule `nmf` turns any architecture into) [our choices]:
- The data are whole images, as in Lee & Seung's faces and P3's MNIST run, average-pooled to
  `resolution` px. The network sees standardised images (pipeline.objectives.augment), which
  are signed, so X = [x⁺, x⁻] (x = x⁺ − x⁻, both ≥ 0): the usual non-negative split, which
  keeps every pixel's sign without knowing the dataset's channel means.
- An image's code is the MU solution with the components fixed (`transform`, a fixed number
  of updates from a constant start of √(mean(X_i)/k) per image, so it does not depend on the
  other images of a batch; scikit-learn starts from the batch's mean).
- Training is online: each training batch's codes are solved, the readout takes its SGD step
  on them, then the components take one MU step on that batch (the mini-batch MU of Serizel,
  Essid & Richard 2016). The codes are the model's one compared layer, `nmf`; `readout`
  (logits) is the second.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The ε of scikit-learn's MU (float32 machine epsilon), used the same way.
EPSILON = float(torch.finfo(torch.float32).eps)
BETA_LOSSES = ("frobenius", "kullback-leibler")


def _check_beta(beta_loss: str) -> None:
    if beta_loss not in BETA_LOSSES:
        raise ValueError(f"beta_loss must be one of {', '.join(BETA_LOSSES)}; got {beta_loss!r}")


def _ratio(X, codes, components):
    """X / (WH), with WH floored at ε as scikit-learn does for KL."""
    return X / (codes @ components).clamp_min(EPSILON)


def beta_divergence(X: torch.Tensor, codes: torch.Tensor, components: torch.Tensor,
                    beta_loss: str = "frobenius") -> torch.Tensor:
    """The NMF objective: ½‖X − WH‖²_F, or the generalised KL divergence
    Σ X log(X / WH) − X + WH (terms with X = 0 contribute WH)."""
    _check_beta(beta_loss)
    approx = codes @ components
    if beta_loss == "frobenius":
        return 0.5 * (X - approx).pow(2).sum()
    approx = approx.clamp_min(EPSILON)
    positive = X > EPSILON
    return (torch.where(positive, X * torch.log(X.clamp_min(EPSILON) / approx), 0).sum()
            - X.sum() + approx.sum())


def update_codes(X, codes, components, beta_loss="frobenius"):
    """One multiplicative update of the codes W (image, component); returns the new codes."""
    if beta_loss == "frobenius":
        numerator = X @ components.T
        denominator = codes @ (components @ components.T)
    else:
        numerator = _ratio(X, codes, components) @ components.T
        denominator = components.sum(1).expand_as(codes)
    return codes * numerator / torch.where(denominator == 0, EPSILON, denominator)


def _frobenius_components(X, codes, components):
    """The Frobenius update of the components, with its products WᵀX and WᵀW."""
    numerator = codes.T @ X
    gram = codes.T @ codes
    denominator = gram @ components
    return components * numerator / torch.where(denominator == 0, EPSILON, denominator), numerator, gram


def update_components(X, codes, components, beta_loss="frobenius"):
    """One multiplicative update of the components H (component, pixel); returns them."""
    if beta_loss == "frobenius":
        return _frobenius_components(X, codes, components)[0]
    numerator = codes.T @ _ratio(X, codes, components)
    sums = codes.sum(0)
    denominator = torch.where(sums == 0, 1.0, sums)[:, None].expand_as(components)
    return components * numerator / torch.where(denominator == 0, EPSILON, denominator)


def _components_and_frobenius(X, codes, components, norm_x):
    """`update_components` (Frobenius) and ½‖X − WH‖² at the new factors, from its own products.

    ½‖X − WH‖² = ½(‖X‖² − 2 Σ (WᵀX) ⊙ H + Σ (WᵀW) ⊙ (H Hᵀ)): WᵀX and WᵀW are the update's
    numerator and denominator terms, so the objective costs one (component × component)
    product instead of forming WH (image × pixel). Sums in float64.
    """
    new, numerator, gram = _frobenius_components(X, codes, components)
    cross = (numerator.double() * new.double()).sum()
    fit = (gram.double() * (new @ new.T).double()).sum()
    return new, max(0.5 * float(norm_x - 2.0 * cross + fit), 0.0)


def fit_nmf(X: torch.Tensor, codes: torch.Tensor, components: torch.Tensor, *,
            beta_loss: str = "frobenius", max_iter: int = 200, tol: float = 1e-4,
            loss_every: int = 10) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Alternating multiplicative updates from the given factors, as scikit-learn's MU solver.

    Parameters
    ----------
    X : torch.Tensor
        (image, pixel), non-negative.
    codes, components : torch.Tensor
        Initial factors (image, component) and (component, pixel), non-negative.
    beta_loss : {"frobenius", "kullback-leibler"}
    max_iter : int
        Iterations (one update of the codes, then of the components).
    tol : float
        Stop when the objective's square root fell by less than tol × its initial value over
        the last 10 iterations (scikit-learn's rule); 0 runs max_iter iterations.
    loss_every : int
        Record the objective every this many iterations (a divisor of 10 when tol > 0). The
        Frobenius objective comes from the update's own products at no extra cost; a KL
        evaluation costs as much as an update, so scikit-learn's 10 by default.

    Returns
    -------
    (codes, components, losses)
        The fitted factors and the objective before the first iteration and after every
        `loss_every`-th.
    """
    _check_beta(beta_loss)
    if (X < 0).any():
        raise ValueError("NMF needs non-negative data; X has negative entries")
    if tol > 0 and 10 % loss_every:
        raise ValueError(f"loss_every must divide 10 when tol > 0; got {loss_every}")
    losses = [float(beta_divergence(X, codes, components, beta_loss))]
    start = previous = (2 * losses[0]) ** 0.5
    norm_x = float(X.double().pow(2).sum()) if beta_loss == "frobenius" else None
    for n_iter in range(1, max_iter + 1):
        codes = update_codes(X, codes, components, beta_loss)
        if beta_loss == "frobenius":
            components, loss = _components_and_frobenius(X, codes, components, norm_x)
        else:
            components = update_components(X, codes, components, beta_loss)
            loss = None
        if n_iter % loss_every == 0:
            losses.append(loss if loss is not None else float(beta_divergence(X, codes, components, beta_loss)))
        if tol > 0 and n_iter % 10 == 0:
            error = (2 * losses[-1]) ** 0.5
            if (previous - error) / start < tol:
                break
            previous = error
    return codes, components, losses


def transform(X: torch.Tensor, components: torch.Tensor, *, beta_loss: str = "frobenius",
              n_iter: int = 50) -> torch.Tensor:
    """Codes (image, component) of X with the components fixed: `n_iter` MU steps of the
    codes from √(mean(X_i)/k) per image."""
    k = components.shape[0]
    codes = (X.mean(1, keepdim=True) / k).sqrt().expand(-1, k).clone()
    if beta_loss == "frobenius":                   # the two products do not change: once
        numerator = X @ components.T
        gram = components @ components.T
        for _ in range(n_iter):
            denominator = codes @ gram
            codes = codes * numerator / torch.where(denominator == 0, EPSILON, denominator)
        return codes
    for _ in range(n_iter):
        codes = update_codes(X, codes, components, beta_loss)
    return codes


def nonnegative_split(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """[x⁺, x⁻] of images x (image, channel, y, x) pooled to resolution²: (image, 2·c·r²)."""
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.adaptive_avg_pool2d(x, resolution)
    flat = x.flatten(1)
    return torch.cat([flat.clamp_min(0), (-flat).clamp_min(0)], 1)


class NMFLayer(nn.Module):
    """Whole-image NMF codes; components learn by multiplicative updates, never by gradient.

    Parameters
    ----------
    n_components : int
        k, the number of components (the layer's width).
    resolution : int
        Images are average-pooled to resolution × resolution before the split.
    in_channels : int
    beta_loss : {"frobenius", "kullback-leibler"}
    transform_iter : int
        MU steps that solve an image's code.

    Attributes
    ----------
    components : torch.Tensor
        Buffer (component, pixel) with pixel = 2 · in_channels · resolution², drawn as
        scikit-learn's random init, √(m / k)·|N(0, 1)|, with m = 0.4 the mean of |z| / 2 for a
        standardised pixel z.
    code : torch.Tensor
        int64 buffer [beta_loss index in `BETA_LOSSES`, transform_iter, resolution]: saved
        with the weights, so a checkpoint rebuilds the layer it was trained as whatever
        settings the rebuilding code passes (see `NMFNet`).
    cache : tuple or None
        (X, codes) of the last training batch, until `nmf_step`.
    """

    def __init__(self, n_components: int, resolution: int, in_channels: int = 3, *,
                 beta_loss: str = "frobenius", transform_iter: int = 50, device=None):
        super().__init__()
        _check_beta(beta_loss)
        n_features = 2 * in_channels * resolution ** 2
        scale = (0.4 / n_components) ** 0.5
        self.register_buffer(
            "components", scale * torch.randn(n_components, n_features, device=device).abs())
        self.register_buffer("code", torch.tensor(
            [BETA_LOSSES.index(beta_loss), transform_iter, resolution], device=device))
        self.cache = None

    @property
    def settings(self) -> tuple[str, int, int]:
        """(beta_loss, transform_iter, resolution), read from the `code` buffer."""
        beta, n_iter, resolution = self.code.tolist()
        return BETA_LOSSES[beta], n_iter, resolution

    def forward(self, x):
        beta_loss, n_iter, resolution = self.settings
        X = nonnegative_split(x.detach(), resolution)
        with torch.no_grad():
            codes = transform(X, self.components, beta_loss=beta_loss, n_iter=n_iter)
        if self.training:
            self.cache = (X, codes)
        return codes

    @torch.no_grad()
    def nmf_step(self) -> None:
        """One MU step of the components on the last training batch, then forget it."""
        if self.cache is not None:
            X, codes = self.cache
            self.components.copy_(update_components(X, codes, self.components, self.settings[0]))
            self.cache = None

    def extra_repr(self):
        beta_loss, n_iter, resolution = ("?", "?", "?") if self.code.is_meta else self.settings
        return (f"n_components={self.components.shape[0]}, resolution={resolution}, "
                f"beta_loss={beta_loss!r}, transform_iter={n_iter}")


class NMFNet(nn.Module):
    """An NMF layer and a linear readout: the model rule `nmf` trains.

    The readout reads the codes standardised per component (BatchNorm without affine
    parameters: batch statistics in training, running ones after), still a linear map of the
    codes; on raw codes (all positive, ~0.05 at the start) SGD at the task's learning rate
    left the readout at chance for 5 epochs [our choice].

    Loading a state dict takes its shapes (components, readout) as they are stored, so a
    checkpoint of any `n_components` and `resolution` loads into a default-built NMFNet.

    Attributes
    ----------
    layer_names : tuple of str
        `nmf` (the codes) and `readout` (logits).
    """

    def __init__(self, n_classes: int, n_components: int, resolution: int, in_channels: int = 3,
                 *, beta_loss: str = "frobenius", transform_iter: int = 50, device=None):
        super().__init__()
        self.nmf = NMFLayer(n_components, resolution, in_channels, beta_loss=beta_loss,
                            transform_iter=transform_iter, device=device)
        self.standardize = nn.BatchNorm1d(n_components, affine=False, device=device)
        self.readout = nn.Linear(n_components, n_classes, device=device)
        self.layer_names = ("nmf", "readout")
        self._register_load_state_dict_pre_hook(self._take_stored_shapes)

    def _take_stored_shapes(self, state_dict, prefix, *_args):
        stored = state_dict.get(prefix + "nmf.components")
        if stored is not None and stored.shape != self.nmf.components.shape:
            device = self.nmf.components.device
            self.nmf.components = torch.empty(stored.shape, device=device)
            weight = state_dict[prefix + "readout.weight"]
            self.readout = nn.Linear(weight.shape[1], weight.shape[0], device=device)
            self.standardize = nn.BatchNorm1d(weight.shape[1], affine=False, device=device)

    def forward(self, x):
        """Logits (batch, n_classes) for standardised images (batch, channel, y, x)."""
        return self.readout(self.standardize(self.nmf(x)))
