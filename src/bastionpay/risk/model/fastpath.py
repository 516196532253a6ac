"""The boosted trees as flat arrays, evaluated with a few numpy operations per tree level.

Why: scikit-learn's `HistGradientBoostingClassifier.decision_function` makes one Python-level call
per tree, and, when the model has categorical features, runs a ColumnTransformer and rebuilds the
known-category bitsets on every call. For a single payment that fixed cost dominates: ~1.7 ms of
CPU for 250 trees on 29 numeric features, ~3.5 ms with six categorical ones (bench/risk.py). Here
all trees are walked together, one level at a time, so a call costs about a dozen numpy
operations per level of the deepest tree, whatever the number of trees.

Safety: this reads scikit-learn's fitted internals (`_predictors`, `_baseline_prediction`,
`_preprocessor`, `_bin_mapper`), which are not a public API. Three things make that acceptable:
a model only loads under the scikit-learn minor version that trained it (`store.load`); every
`CompiledTrees` is checked against the public `decision_function` on probe rows built from the
model's own split thresholds and categories (plus missing and unknown values) when it is built,
and `ModelScorer` falls back to the public path if the check fails or the internals are not what
this module expects; and a test compares the two on random data. The decision rules mirror
sklearn's `_predict_from_raw_data`: a missing value follows the node's `missing_go_to_left`; a
numeric value goes left when `<=` the threshold; a category goes left when in the node's bitset,
right when a known category, and is treated as missing otherwise (or when negative).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from bastionpay.risk.model.schema import FloatMatrix

# A probe of this many rows checks a compiled model against scikit-learn's own prediction.
PROBE_ROWS: Final = 512
TOLERANCE: Final = 1e-9  # the sums run in another order: rounding differs around 1e-15

IntArray = npt.NDArray[np.int64]


class FastPathUnavailable(Exception):
    """The fitted model is not of the shape this module compiles, or disagrees with sklearn."""


class CompiledTrees:
    def __init__(self, trees: Any) -> None:
        try:
            self._compile(trees)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise FastPathUnavailable(f"cannot compile the trees: {exc}") from None

    def _compile(self, trees: Any) -> None:
        if int(trees.n_trees_per_iteration_) != 1:
            raise FastPathUnavailable("not a binary model")
        self.n_features = int(trees.n_features_in_)
        self.baseline = float(np.asarray(trees._baseline_prediction).ravel()[0])
        predictors = [p for (p,) in trees._predictors]  # one tree per iteration (binary)
        nodes = [p.nodes for p in predictors]
        sizes = np.array([len(n) for n in nodes], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        bitsets = [p.raw_left_cat_bitsets for p in predictors]
        bitset_offsets = np.concatenate([[0], np.cumsum([len(b) for b in bitsets])[:-1]])
        flat = np.concatenate(nodes)
        tree_of_node = np.repeat(np.arange(len(nodes)), sizes)
        self.roots: IntArray = offsets.astype(np.int64)
        self.value = flat["value"].astype(np.float64)
        self.feature = flat["feature_idx"].astype(np.int64)
        self.threshold = flat["num_threshold"].astype(np.float64)
        self.missing_left = flat["missing_go_to_left"].astype(bool)
        self.is_leaf = flat["is_leaf"].astype(bool)
        self.is_categorical = flat["is_categorical"].astype(bool)
        # Child indices are per tree; shift them into the flat array.
        self.left = flat["left"].astype(np.int64) + offsets[tree_of_node]
        self.right = flat["right"].astype(np.int64) + offsets[tree_of_node]
        self.max_depth = int(flat["depth"].max())
        self.raw_bitsets = (
            np.concatenate(bitsets).astype(np.uint32)
            if sum(len(b) for b in bitsets)
            else np.zeros((1, 8), dtype=np.uint32)
        )
        self.bitset_index = np.minimum(
            flat["bitset_idx"].astype(np.int64) + bitset_offsets[tree_of_node],
            len(self.raw_bitsets) - 1,  # non-categorical nodes: any valid row, never used
        )
        # The input as the trees saw it: with categorical features, sklearn's ColumnTransformer
        # puts them first, each re-coded by an OrdinalEncoder (sorted categories, unknown → NaN).
        is_categorical = getattr(trees, "is_categorical_", None)
        self.categories: list[npt.NDArray[np.float64]] = []
        if trees._preprocessor is None:
            self.order: IntArray = np.arange(self.n_features, dtype=np.int64)
            self.n_categorical = 0
        else:
            mask = np.asarray(is_categorical, dtype=bool)
            self.order = np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)])
            self.n_categorical = int(mask.sum())
            encoder = trees._preprocessor.named_transformers_["encoder"]
            for values in encoder.categories_:
                known = np.asarray(values, dtype=np.float64)
                self.categories.append(known[~np.isnan(known)])
        known_bitsets, f_idx_map = trees._bin_mapper.make_known_categories_bitsets()
        self.known_bitsets = np.asarray(known_bitsets, dtype=np.uint32)
        if not len(self.known_bitsets):
            self.known_bitsets = np.zeros((1, 8), dtype=np.uint32)
        self.known_index = np.asarray(f_idx_map, dtype=np.int64)
        self.any_categorical_split = bool(self.is_categorical.any())

    def prepare(self, x: FloatMatrix) -> FloatMatrix:
        """The trees' input: columns reordered, categories re-coded as sklearn's encoder does."""
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got shape {x.shape}")
        xp = np.array(x[:, self.order], dtype=np.float64)
        for j, known in enumerate(self.categories):
            column = xp[:, j]
            position = np.searchsorted(known, column)
            clipped = np.minimum(position, len(known) - 1)
            found = (position < len(known)) & (known[clipped] == column)
            xp[:, j] = np.where(found, clipped, np.nan)
        return xp

    def decision_function(self, x: FloatMatrix) -> npt.NDArray[np.float64]:
        xp = self.prepare(x)
        n_rows, n_trees = len(xp), len(self.roots)
        # One entry per (row, tree); each level moves the entries not yet at a leaf one node
        # down, and entries that reached a leaf drop out, so deep trees cost only where deep.
        node = np.tile(self.roots, n_rows)
        row = np.repeat(np.arange(n_rows), n_trees)
        walking = np.flatnonzero(~self.is_leaf[node])
        for _ in range(self.max_depth):
            if not len(walking):
                break
            at = node[walking]
            feature = self.feature[at]
            value = xp[row[walking], feature]
            missing = np.isnan(value)
            missing_left = self.missing_left[at]
            with np.errstate(invalid="ignore"):  # NaN <= t is False, and handled just below
                go_left = np.where(missing, missing_left, value <= self.threshold[at])
            if self.any_categorical_split:
                go_left = self._categorical(at, feature, value, missing, missing_left, go_left)
            following = np.where(go_left, self.left[at], self.right[at])
            node[walking] = following
            walking = walking[~self.is_leaf[following]]
        leaves = self.value[node].reshape(n_rows, n_trees)
        return np.asarray(self.baseline + leaves.sum(axis=1), dtype=np.float64)

    def _categorical(
        self,
        node: IntArray,
        feature: IntArray,
        value: npt.NDArray[np.float64],
        missing: npt.NDArray[np.bool_],
        missing_left: npt.NDArray[np.bool_],
        go_left: npt.NDArray[np.bool_],
    ) -> npt.NDArray[np.bool_]:
        categorical = self.is_categorical[node] & ~missing
        if not categorical.any():
            return go_left
        code = np.where(categorical, value, 0.0)
        negative = code < 0
        # sklearn reads the category as an unsigned byte (codes are < 255 by construction).
        byte = np.clip(code, 0, 255).astype(np.int64)
        word, bit = byte // 32, (byte % 32).astype(np.uint32)
        in_left = (self.raw_bitsets[self.bitset_index[node], word] >> bit) & 1
        known = (self.known_bitsets[self.known_index[feature], word] >> bit) & 1
        decided = np.where(in_left == 1, True, np.where(known == 1, False, missing_left))
        decided = np.where(negative, missing_left, decided)
        return np.where(categorical, decided, go_left)


def compile_checked(trees: Any) -> CompiledTrees:
    """Compile `trees` and prove it agrees with sklearn on probe rows; raise if it cannot."""
    compiled = CompiledTrees(trees)
    probe = _probe(trees, compiled)
    expected = np.asarray(trees.decision_function(probe), dtype=np.float64)
    actual = compiled.decision_function(probe)
    worst = float(np.max(np.abs(expected - actual)))
    if not worst <= TOLERANCE:
        raise FastPathUnavailable(f"compiled trees differ from sklearn by {worst:g}")
    return compiled


def _probe(trees: Any, compiled: CompiledTrees) -> FloatMatrix:
    """Rows that reach every kind of branch: values at, just around and beyond each split
    threshold, every known category, an unknown category, and missing values."""
    rng = np.random.default_rng(0)
    probe = np.empty((PROBE_ROWS, compiled.n_features), dtype=np.float64)
    thresholds = trees._bin_mapper.bin_thresholds_  # per input column of the trees
    for j, f in enumerate(compiled.order.tolist()):
        if j < compiled.n_categorical:
            known = compiled.categories[j]
            pool = np.concatenate([known, [np.nan, float(known.max(initial=0) + 1)]])
        else:
            cuts = np.asarray(thresholds[j], dtype=np.float64)
            pool = np.concatenate([cuts, np.nextafter(cuts, np.inf), cuts - 1, cuts + 1, [np.nan]])
            if not len(cuts):
                pool = np.array([0.0, 1.0, np.nan])
        probe[:, f] = rng.choice(pool, PROBE_ROWS)
    return probe
