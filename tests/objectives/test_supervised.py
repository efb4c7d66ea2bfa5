"""`Supervised.fit_readout`: the readout refit to convergence equals scikit-learn's
L2-regularised multinomial logistic regression on the same frozen features."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from pipeline.models import build_model
from pipeline.objectives import ObjectiveNet, Split, readout_features
from pipeline.objectives.augment import preprocess
from pipeline.objectives.supervised import Supervised

pytestmark = pytest.mark.usefixtures("torch_one_thread")
PREPROCESSING = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def test_fit_readout_equals_scikit_learn_logistic_regression():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (150, 3, 16, 16), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 4, (150,), generator=generator)
    torch.manual_seed(0)
    net = ObjectiveNet(build_model("ventral_cnn", 4, 16)).train()
    data = Split(images, labels, PREPROCESSING, batch_size=64, is_train=True)
    before = {name: p.clone() for name, p in net.named_parameters() if "readout" not in name}
    weight_decay = 1e-2

    Supervised().fit_readout(net, data, weight_decay=weight_decay, iterations=500)

    assert net.training                                         # the mode is given back
    assert all(torch.equal(p, before[name]) for name, p in net.named_parameters()
               if "readout" not in name)                         # only the readout moved
    net.eval()
    with torch.no_grad():
        x, logits = readout_features(net.backbone, preprocess(images, PREPROCESSING))
    # scikit-learn: C·Σ cross-entropy + ½‖W‖², the intercept unpenalised; ours is that / (C·n).
    reference = LogisticRegression(C=1 / (len(images) * weight_decay), tol=1e-10,
                                   max_iter=10_000).fit(x.double().numpy(), labels.numpy())
    np.testing.assert_allclose(net.backbone.readout.weight.detach().numpy(), reference.coef_,
                               atol=2e-4)
    np.testing.assert_allclose(torch.softmax(logits, 1).numpy(),
                               reference.predict_proba(x.double().numpy()), atol=2e-4)
