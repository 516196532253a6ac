"""`python -m bastionpay.risk.simulator OUT.csv [--events N] [--seed S] …`: a training file."""

from __future__ import annotations

import argparse
import sys

from bastionpay.risk.simulator.export import write_csv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bastionpay.risk.simulator")
    parser.add_argument("out", help="CSV file to write")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--merchants", type=int, default=3)
    parser.add_argument("--fraud-rate", type=float, default=0.015)
    args = parser.parse_args(argv)
    rows = write_csv(
        args.out,
        args.events,
        seed=args.seed,
        merchants=args.merchants,
        fraud_rate=args.fraud_rate,
    )
    sys.stderr.write(f"wrote {rows} attempts to {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
