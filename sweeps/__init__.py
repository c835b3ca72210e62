"""Ray Tune + Optuna + MLflow around dkan.fit: the only place the search space exists."""
