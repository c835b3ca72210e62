"""A study's outputs, each a writer of (plan, layout, outcome): results, figures, the bundle, the HTML
report, MLflow logging and the model registry."""
