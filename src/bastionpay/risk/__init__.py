"""Fraud detection and risk (issue 7): features, rules, model, decisions, reviews."""
