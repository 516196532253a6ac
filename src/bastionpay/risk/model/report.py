"""The evaluation report: `report.json` (machine), `report.md` (people), `pr_curve.png` (both).

The plot is drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global
state), so it works in a headless server and from several threads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import numpy as np
from matplotlib.figure import Figure

from bastionpay.risk.model.metrics import THRESHOLDS, pr_curve
from bastionpay.risk.model.training import TrainedModel

REPORT_JSON: Final = "report.json"
REPORT_MD: Final = "report.md"
PR_CURVE_PNG: Final = "pr_curve.png"


def report_data(model: TrainedModel) -> dict[str, Any]:
    m = model.manifest
    test, baseline = m["metrics"]["test"], m["metrics"]["baseline"]
    data: dict[str, Any] = {
        "version": model.version,
        "created_at": m["created_at"],
        "dataset": m["dataset"],
        "label": m["label"],
        "time_column": m["time_column"],
        "split": m["split"],
        "model": m["model"],
        "search": m["search"],
        "score_mapping": m["score_mapping"],
        "features": [
            {"name": f["name"], "kind": f["kind"], "categories": len(f["categories"])}
            for f in m["schema"]["features"]
        ],
        "dropped_columns": m["schema"]["dropped"],
        "metrics": {"model": test, "baseline": baseline},
        "libraries": m["libraries"],
    }
    if baseline is not None:
        data["ratio_to_baseline"] = {
            key: _ratio(test[key], baseline[key]) for key in ("average_precision", "roc_auc")
        }
    return data


def write_report(model: TrainedModel, directory: Path) -> dict[str, Any]:
    """Write the three files into `directory` (created if needed); returns the JSON data."""
    directory.mkdir(parents=True, exist_ok=True)
    data = report_data(model)
    (directory / REPORT_JSON).write_text(
        json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    (directory / REPORT_MD).write_text(markdown(data), encoding="utf-8")
    if model.evaluation is not None:
        plot_pr_curve(model, directory / PR_CURVE_PNG)
    return data


def summary_lines(data: dict[str, Any]) -> list[str]:
    """A fixed-width table of the headline figures, for the terminal and the Markdown report."""
    rows = [("model", data["metrics"]["model"])]
    if data["metrics"]["baseline"] is not None:
        rows.append(("untuned baseline", data["metrics"]["baseline"]))
    header = f"{'':18} {'ROC-AUC':>8} {'AUPRC':>8}"
    for name, _ in THRESHOLDS:
        header += f" {'P@' + name:>12} {'R@' + name:>12}"
    lines = [header]
    for title, metrics in rows:
        line = f"{title:18} {metrics['roc_auc']:8.4f} {metrics['average_precision']:8.4f}"
        for name, _ in THRESHOLDS:
            at = metrics["thresholds"][name]
            line += f" {_fmt(at['precision']):>12} {_fmt(at['recall']):>12}"
        lines.append(line)
    ratio = data.get("ratio_to_baseline")
    if ratio:
        lines.append(
            f"AUPRC ratio model/baseline: {_fmt(ratio['average_precision'])}; "
            f"ROC-AUC ratio: {_fmt(ratio['roc_auc'])}"
        )
    return lines


def markdown(data: dict[str, Any]) -> str:
    test = data["metrics"]["model"]
    split = data["split"]
    model = data["model"]
    lines = [
        f"# Risk model {data['version']}",
        "",
        f"Data: `{data['dataset']['name']}` (SHA-256 `{data['dataset']['sha256'][:16]}…`), "
        f"{data['dataset']['rows']} rows, {data['dataset']['positives']} positives; label "
        f"`{data['label']}`, time `{data['time_column']}`.",
        f"Split ({split['kind']}): fit {split['fit']['rows']} rows "
        f"({split['fit']['positives']} positives), calibration {split['calibration']['rows']} "
        f"({split['calibration']['positives']}), test {split['test']['rows']} "
        f"({split['test']['positives']}).",
        f"Model: HistGradientBoostingClassifier {json.dumps(model['candidate'])}, "
        f"{model['params']['max_iter']} iterations"
        + _blend_description(model)
        + f", {model['calibration']} calibration of the model's log-odds.",
        "",
        "## Test part",
        "",
        "| | ROC-AUC | AUPRC | Brier | "
        + " | ".join(
            f"precision @{name} (≥{int(score)}) | recall @{name}" for name, score in THRESHOLDS
        )
        + " |",
        "|---|---|---|---|" + "---|---|" * len(THRESHOLDS),
    ]
    rows = [("model", test)]
    if data["metrics"]["baseline"] is not None:
        rows.append(("untuned baseline", data["metrics"]["baseline"]))
    for title, metrics in rows:
        cells = [
            title,
            f"{metrics['roc_auc']:.4f}",
            f"{metrics['average_precision']:.4f}",
            f"{metrics['brier']:.5f}",
        ]
        for name, _ in THRESHOLDS:
            at = metrics["thresholds"][name]
            cells += [_fmt(at["precision"]), _fmt(at["recall"])]
        lines.append("| " + " | ".join(cells) + " |")
    ratio = data.get("ratio_to_baseline")
    if ratio:
        lines += ["", f"AUPRC ratio model/baseline: {_fmt(ratio['average_precision'])}."]
    lines += [
        "",
        "Scores: "
        + ", ".join(f"P={p:g} → {s:g}" for p, s in data["score_mapping"]["knots"])
        + " (piecewise linear in log-odds).",
        "",
        "## Search (calibration part)",
        "",
        "| candidate | iterations | AUPRC |",
        "|---|---|---|",
    ]
    for result in data["search"]:
        lines.append(
            f"| {json.dumps(result['candidate'])} | {result['iterations']} | "
            f"{result['average_precision']:.4f} |"
        )
    if data["dropped_columns"]:
        lines += [
            "",
            "Dropped columns: " + ", ".join(f"`{c}` ({why})" for c, why in data["dropped_columns"]),
        ]
    lines += ["", f"![precision-recall curve]({PR_CURVE_PNG})", ""]
    return "\n".join(lines)


def plot_pr_curve(model: TrainedModel, path: Path) -> None:
    evaluation = model.evaluation
    if evaluation is None:
        return
    figure = Figure(figsize=(7.0, 5.0), dpi=110)
    axes = figure.subplots()
    test = model.manifest["metrics"]["test"]
    recall, precision = pr_curve(evaluation.y, evaluation.probability)
    axes.step(
        recall,
        precision,
        where="post",
        color="tab:blue",
        label=f"BastionPay model (AUPRC {test['average_precision']:.3f})",
    )
    if evaluation.baseline_probability is not None:
        baseline = model.manifest["metrics"]["baseline"]
        b_recall, b_precision = pr_curve(evaluation.y, evaluation.baseline_probability)
        axes.step(
            b_recall,
            b_precision,
            where="post",
            color="tab:gray",
            linestyle="--",
            label=f"untuned baseline (AUPRC {baseline['average_precision']:.3f})",
        )
    markers = {"elevated": ("o", "tab:orange"), "highest": ("s", "tab:red")}
    for name, score in THRESHOLDS:
        at = test["thresholds"][name]
        if at["precision"] is None:
            continue
        marker, color = markers[name]
        axes.plot(
            [at["recall"]],
            [at["precision"]],
            marker=marker,
            color=color,
            linestyle="none",
            markersize=8,
            label=f"{name} (score ≥ {score:g}): P {at['precision']:.2f}, R {at['recall']:.2f}",
        )
    prevalence = float(np.mean(evaluation.y))
    axes.axhline(prevalence, color="black", linewidth=0.6, linestyle=":", label="fraud rate")
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("recall (share of frauds flagged)")
    axes.set_ylabel("precision (share of flagged that are fraud)")
    axes.set_title(
        f"Precision-recall, test part ({len(evaluation.y)} rows, {int(evaluation.y.sum())} frauds)"
    )
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png")


def _blend_description(model: dict[str, Any]) -> str:
    parts = [
        name
        for key, name in (
            ("linear_blend", "a logistic regression"),
            ("neural_blend", "a neural network"),
        )
        if model.get(key)
    ]
    return f", blended with {' and '.join(parts)} (mean log-odds)" if parts else ""


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
