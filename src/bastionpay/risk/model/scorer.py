"""Scoring payments with a loaded model: rows (dicts) in, 0–100 scores out.

CPU budget: the api scores one payment per request, so the fixed cost of a call matters more than
the per-row cost. Three things keep it small:
- ML threads are held at 1 around every prediction (`threadpoolctl`, per call, because OpenMP's
  thread count is per calling thread and the api scores from worker threads). With the default
  thread count the OpenMP team spins up for a single row and burns several times the CPU of the
  prediction itself for no speed-up; it would also compete with the other requests for the cores;
- small batches (up to `FAST_PATH_MAX_ROWS` rows, so every single payment) go through
  `fastpath.CompiledTrees`, all trees walked together in numpy, which is checked against
  scikit-learn when the scorer is built and replaced by scikit-learn's own path if it disagrees;
  larger batches go through scikit-learn, whose per-row cost is lower once its per-call overhead
  is spread over many rows;
- a blended model's linear and neural parts (`linear.py`, `neural.py`) are a few numpy
  operations on the same matrix (a dot product; two small matrix products);
- the calibrated probability is the decision function through the calibrator
  (`training.calibrate`, what `CalibratedClassifierCV.predict_proba` computes, without that
  wrapper's per-call validation layers; a test checks both give the same numbers).
`bench/risk.py` measures single scores and batches.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
from threadpoolctl import ThreadpoolController

from bastionpay.risk.model.fastpath import CompiledTrees, FastPathUnavailable, compile_checked
from bastionpay.risk.model.schema import FloatMatrix, Schema
from bastionpay.risk.model.scoremap import ELEVATED_SCORE, HIGHEST_SCORE, ScoreMapping
from bastionpay.risk.model.store import LoadedModel
from bastionpay.risk.model.training import blend_parts, calibrate

log = logging.getLogger("bastionpay.risk")

# Up to this many rows the compiled trees are cheaper; beyond, scikit-learn's Cython loop is.
FAST_PATH_MAX_ROWS: Final = 48


class ModelScorer:
    """Thread-safe: holds only the fitted (read-only) estimator and lookup tables."""

    def __init__(self, model: LoadedModel, *, threads: int = 1, fast_path: bool = True) -> None:
        self.version = model.version
        self.schema: Schema = model.schema
        self.mapping: ScoreMapping = model.mapping
        self._trees = model.trees
        self._calibrator = model.calibrator
        self._linear = model.linear
        self._neural = model.neural
        self._threads = threads
        # Built once: discovering the loaded thread pools walks the process's libraries (~1 ms).
        self._controller = ThreadpoolController()
        self._compiled: CompiledTrees | None = None
        if fast_path:
            try:
                with self._controller.limit(limits=self._threads):
                    self._compiled = compile_checked(model.trees)
            except FastPathUnavailable as exc:
                # Slower, not wrong: scikit-learn's own path serves every call.
                log.warning("risk model %s: no fast path (%s)", model.version, exc)

    @property
    def fast_path(self) -> bool:
        return self._compiled is not None

    @property
    def inputs(self) -> list[str]:
        """The row keys the model reads; any other key is ignored, a missing one is missing."""
        return self.schema.inputs

    def probability_batch(self, rows: Sequence[Mapping[str, object]]) -> list[float]:
        if not rows:
            return []
        return [float(p) for p in self._probabilities(self.schema.encode_rows(rows))]

    def score_batch(self, rows: Sequence[Mapping[str, object]]) -> list[float]:
        """0–100 risk scores, one per row, in order."""
        if not rows:
            return []
        probabilities = self._probabilities(self.schema.encode_rows(rows))
        return [float(s) for s in self.mapping.scores(probabilities)]

    def score_one(self, row: Mapping[str, object]) -> float:
        return self.score_batch([row])[0]

    def level(self, score: float) -> str:
        if score >= HIGHEST_SCORE:
            return "highest"
        return "elevated" if score >= ELEVATED_SCORE else "normal"

    def _probabilities(self, x: FloatMatrix) -> npt.NDArray[np.float64]:
        with self._controller.limit(limits=self._threads):
            if self._compiled is not None and len(x) <= FAST_PATH_MAX_ROWS:
                decision = self._compiled.decision_function(x)
            else:
                decision = self._trees.decision_function(x)
            decision = blend_parts(decision, x, self._linear, self._neural)
            return calibrate(self._calibrator, decision)
