"""A small neural network (one hidden layer), the blend's third part.

Why: the trees cut each feature into steps and the logistic regression is a single plane; a
network with one hidden layer of ReLU units draws smooth, curved boundaries between the two, and
makes mistakes of its own. Measured on three time-ordered validation slices inside the ULB
training part only (docs/risk-model.md): adding it to the trees + regression blend raised AUPRC on
every slice, for every width (32–128 units), regularisation (alpha 0.001–0.1) and seed tried;
the settings below are a middle choice, not the best one of those runs.

Fitting: scikit-learn's `MLPClassifier` (adam, 64 ReLU units, L2 alpha 0.01, mini-batches of
512) for a fixed `EPOCHS` epochs, on `design.Design`'s standardised columns clipped to ±`CLIP`.
- A fixed number of epochs rather than sklearn's early stopping, whose validation rows are a
  random sample (not time-respecting, like the trees'); 20 epochs of 512-row batches is enough for
  the loss to level off on ULB (10 and 40 measured no better). sklearn then warns that the
  optimiser did not converge; that is the point, and the warning is silenced for that call only.
- The clip: outside the training range a ReLU network extrapolates linearly without bound, so one
  extreme value (a PCA component at 40 standard deviations, an amount a thousand times the usual)
  could swing the log-odds; clipped, it counts as "very large" and no more.

Kept as plain numpy arrays (weights and biases); scoring is two small matrix products in numpy
(64 × the design width multiply-adds), no scikit-learn call and no new trusted type in the file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from bastionpay.risk.model.design import ARRAYS as DESIGN_ARRAYS
from bastionpay.risk.model.design import Design
from bastionpay.risk.model.schema import FloatMatrix, Schema

HIDDEN_UNITS: Final = 64
ALPHA: Final = 0.01
EPOCHS: Final = 20
BATCH_SIZE: Final = 512
CLIP: Final = 10.0  # standard deviations
_WEIGHTS: Final = ("hidden_weights", "hidden_bias", "output_weights", "output_bias")
_ARRAYS: Final = (*DESIGN_ARRAYS, *_WEIGHTS)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class NeuralPart:
    design: Design
    hidden_weights: FloatArray  # (design width, units)
    hidden_bias: FloatArray  # (units,)
    output_weights: FloatArray  # (units,)
    output_bias: FloatArray  # (1,)

    def decision_function(self, x: FloatMatrix) -> FloatArray:
        """The network's log-odds: what MLPClassifier puts through its final logistic."""
        z = network_input(self.design, x)
        hidden = np.maximum(z @ self.hidden_weights + self.hidden_bias, 0.0)
        return np.asarray(hidden @ self.output_weights + self.output_bias[0], dtype=np.float64)

    def to_arrays(self) -> dict[str, Any]:
        return self.design.to_arrays() | {name: getattr(self, name) for name in _WEIGHTS}

    @classmethod
    def from_arrays(cls, data: Any) -> NeuralPart:
        """Rebuild from `to_arrays` (a loaded model file); raises ValueError on any mismatch."""
        if not isinstance(data, dict) or set(data) != set(_ARRAYS):
            raise ValueError("the neural part is not the expected set of arrays")
        design = Design.from_arrays(data)
        w = {name: np.asarray(data[name], dtype=np.float64) for name in _WEIGHTS}
        units = len(w["hidden_bias"])
        if not (
            w["hidden_weights"].shape == (design.width, units)
            and w["output_weights"].shape == (units,)
            and w["output_bias"].shape == (1,)
        ):
            raise ValueError("the neural part's arrays have inconsistent shapes")
        return cls(design, **w)


def fit_neural(
    x: FloatMatrix, y: npt.NDArray[np.int8], schema: Schema, *, seed: int = 0
) -> NeuralPart:
    design = Design.fit(x, schema)
    model = classifier(len(y), seed=seed)
    with warnings.catch_warnings():
        # A fixed epoch budget by design (module docstring), not a failure to converge.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(network_input(design, x), y)
    (hidden, output), (hidden_bias, output_bias) = model.coefs_, model.intercepts_
    return NeuralPart(
        design,
        np.asarray(hidden, dtype=np.float64),
        np.asarray(hidden_bias, dtype=np.float64),
        np.asarray(output, dtype=np.float64).ravel(),
        np.asarray(output_bias, dtype=np.float64).ravel(),
    )


def classifier(rows: int, *, seed: int) -> MLPClassifier:
    """The unfitted network, as `fit_neural` fits it on `rows` rows."""
    return MLPClassifier(
        hidden_layer_sizes=(HIDDEN_UNITS,),
        alpha=ALPHA,
        batch_size=min(BATCH_SIZE, rows),  # sklearn warns when it must clip it
        max_iter=EPOCHS,
        random_state=seed,
    )


def network_input(design: Design, x: FloatMatrix) -> FloatMatrix:
    """The design's standardised columns, clipped (module docstring: why)."""
    return np.clip(design.standardised(x), -CLIP, CLIP)
