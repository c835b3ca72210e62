"""Training loop (``fit``) and evaluation; no Ray, Optuna or MLflow here."""
