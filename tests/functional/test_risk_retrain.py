"""`bastionpay risk train --from-platform` (issue 7, item 3): retraining on the platform's own
recorded assessments and labels, with activation only on enough labels of both classes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from bastionpay.cli.main import cli
from bastionpay.db.engine import Database
from bastionpay.db.uow import unit_of_work
from bastionpay.kernel.ids import new_id
from bastionpay.risk import retrain
from bastionpay.risk.feature_schema import MODEL_FEATURES
from bastionpay.risk.model import store
from bastionpay.risk.model.scorer import ModelScorer
from bastionpay.risk.models import RiskAssessment, RiskLabel
from bastionpay.risk.platform import train_simulated_model
from bastionpay.risk.simulator import SimulatedPayment, simulate

EVENTS = 3000
FAST = ["--max-iter", "50"]  # a small search: these tests check the plumbing, not the model


def _populate(
    db_url: str, *, fraud_labels: int, legit_labels: int, seed: int = 3
) -> tuple[list[SimulatedPayment], set[int]]:
    """Simulated payments recorded as the payment path records them, some of them labelled.

    Two assessments for some payments (a retry): only the latest may be used. Labels come in
    as the platform writes them; a payment first approved then refunded as fraud is fraud.
    """
    payments = list(simulate(EVENTS, seed=seed, merchants=2, fraud_rate=0.1))
    labelled: set[int] = set()
    for cls, wanted in ((1, fraud_labels), (0, legit_labels)):
        # Evenly spread over time, as labels arrive: a time split needs both classes throughout.
        members = [n for n, p in enumerate(payments) if p.label == cls]
        count = min(wanted, len(members))
        labelled.update(members[i * len(members) // count] for i in range(count))
    database = Database(db_url)
    with unit_of_work(database, write=True) as session:
        for n, p in enumerate(payments):
            intent = new_id("pi")
            e = p.event
            attempts = [p.features] if n % 10 else [{**p.features, "amount_in_usd": -1}, p.features]
            for k, features in enumerate(attempts):
                session.add(
                    RiskAssessment(
                        id=new_id("rsk"),
                        merchant_id=e.merchant,
                        livemode=False,
                        created=e.time + k,
                        payment_intent_id=intent,
                        card_fingerprint=e.card_fingerprint,
                        amount_usd_cents=0,
                        outcome=e.outcome,
                        score=10,
                        level="normal",
                        action="allow",
                        reasons=[],
                        features=features,
                        shadow=[],
                    )
                )
            if n not in labelled:
                continue
            values = ["legit", "fraud"] if p.label and n % 2 else ["fraud" if p.label else "legit"]
            for value in values:
                session.add(
                    RiskLabel(
                        merchant_id=e.merchant,
                        livemode=False,
                        payment_intent_id=intent,
                        label=value,
                        source="review",
                        created=e.time + 60,
                    )
                )
    database.dispose()
    return payments, labelled


def _train(db_url: str, data_dir: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        ["risk", "train", "--from-platform", "--mode", "test", *FAST, *args],
        env={"BASTIONPAY_DATABASE_URL": db_url, "BASTIONPAY_DATA_DIR": str(data_dir)},
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a crash is a test failure with its traceback, not an exit code
    return result.exit_code, result.output


def _models(data_dir: Path) -> Path:
    return data_dir / "risk" / "models"


def test_the_platform_data_set_is_built_from_recorded_features_and_latest_labels(
    fresh_db_url: str,
) -> None:
    payments, labelled = _populate(fresh_db_url, fraud_labels=60, legit_labels=80)
    database = Database(fresh_db_url)
    with unit_of_work(database, write=False) as session:
        data = retrain.platform_data(session, merchant_id=None, livemode=False, now=0)
        one = retrain.platform_data(
            session, merchant_id=payments[0].event.merchant, livemode=False, now=0
        )
        assumed = retrain.platform_data(
            session, merchant_id=None, livemode=False, now=2**40, assume_legit_after_days=30
        )
    database.dispose()
    assert (data.frauds, data.legit_labelled, data.legit_assumed) == (60, 80, 0)
    lines = data.csv.decode().splitlines()
    assert lines[0].split(",") == ["time", *MODEL_FEATURES, "label"]
    assert len(lines) == 1 + 140
    times = [int(line.split(",")[0]) for line in lines[1:]]
    assert times == sorted(times)  # time order, for the time-ordered split
    amount = MODEL_FEATURES.index("amount_in_usd") + 1
    assert all(float(line.split(",")[amount]) >= 0 for line in lines[1:])  # the latest attempt
    assert 0 < one.rows < data.rows
    # With --assume-legit-after, every unlabelled authorized payment old enough is legit too.
    assert assumed.frauds == 60 and assumed.legit_labelled == 80
    assert assumed.legit_assumed == sum(
        1 for n, p in enumerate(payments) if n not in labelled and p.event.outcome == "authorized"
    )


def test_too_few_labels_is_a_clear_refusal(fresh_db_url: str, tmp_path: Path) -> None:
    _populate(fresh_db_url, fraud_labels=5, legit_labels=40)
    code, out = _train(fresh_db_url, tmp_path)
    assert code == 1
    assert "too few labels to train: 5 fraud and 40 legit" in out
    assert "at least 20 of each" in out
    assert store.list_versions(_models(tmp_path)) == []


def test_retraining_activates_with_enough_labels_and_compares_with_the_active_model(
    fresh_db_url: str, tmp_path: Path
) -> None:
    payments, _ = _populate(fresh_db_url, fraud_labels=150, legit_labels=400)
    simulated = train_simulated_model(_models(tmp_path), events=3000)

    code, out = _train(fresh_db_url, tmp_path)
    assert code == 0, out
    assert "150 fraud, 400 legit (400 labelled, 0 assumed)" in out
    assert "on the new held-out part" in out and f"active {simulated[:18]}" in out
    new = store.active_version(_models(tmp_path))
    assert new is not None and new != simulated and f"active model: {new}" in out

    manifest = store.read_manifest(_models(tmp_path), new)
    platform: dict[str, Any] = manifest["platform"]
    assert (platform["frauds"], platform["legit_labelled"]) == (150, 400)
    assert platform["activation"] == "activated"
    # The change of the platform's model is in the audit log (L1).
    database = Database(fresh_db_url)
    with unit_of_work(database, write=False) as session:
        activations = session.execute(
            text("SELECT target_id FROM audit_staged WHERE action = 'risk.model.activate'")
        ).all()
    database.dispose()
    assert [row[0] for row in activations] == [new]
    compared = platform["compared_with_active"]
    assert compared["active"] == simulated and compared["positives"] > 0
    assert manifest["split"]["kind"] == "time" and set(manifest["inputs"]) == set(MODEL_FEATURES)
    assert manifest["metrics"]["test"]["average_precision"] > 0.5  # the frauds are learnable
    # The new active model scores the payment path's feature dicts.
    scorer = ModelScorer(store.load_active(_models(tmp_path)))
    fraud = next(p for p in reversed(payments) if p.label)
    assert 0 <= scorer.score_one(fraud.features) <= 100
    json.dumps(manifest)  # the manifest stays plain JSON


@pytest.mark.parametrize("merchant", [False, True])
def test_a_model_on_too_few_labels_or_one_merchant_is_kept_but_not_activated(
    fresh_db_url: str, tmp_path: Path, merchant: bool
) -> None:
    payments, _ = _populate(
        fresh_db_url, fraud_labels=60 if not merchant else 1000, legit_labels=1000
    )
    simulated = train_simulated_model(_models(tmp_path), events=3000)
    args = ["--merchant", payments[0].event.merchant] if merchant else []
    code, out = _train(fresh_db_url, tmp_path, *args)
    assert code == 0, out
    expected = (
        "replaces the platform's only with --activate"
        if merchant
        else "not activated: 60 fraud and 1000 legit labelled payments, activation needs at "
        "least 100 of each"
    )
    assert expected in out
    assert store.active_version(_models(tmp_path)) == simulated
    assert len(store.list_versions(_models(tmp_path))) == 2  # written, for inspection


def test_usage_and_database_errors_are_messages(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"BASTIONPAY_DATABASE_URL": f"sqlite:///{tmp_path}/missing/api.db"}
    result = runner.invoke(cli, ["risk", "train", "--data-dir", str(tmp_path)], env=env)
    assert result.exit_code == 2 and "--from-platform" in result.output
    result = runner.invoke(
        cli,
        ["risk", "train", "--from-platform", "--dataset", "x.csv", "--data-dir", str(tmp_path)],
        env=env,
    )
    assert result.exit_code == 2 and "no --dataset or --label" in result.output
    result = runner.invoke(
        cli, ["risk", "train", "--from-platform", "--data-dir", str(tmp_path)], env=env
    )
    assert result.exit_code == 1
    assert "cannot read the api database: unable to open database file" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
