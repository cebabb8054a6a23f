"""Hyper-parameter tuning with Optuna (``walsrec tune``)."""
