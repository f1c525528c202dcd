"""Tracking: MLflow runs (params, metrics, artifacts), the MLflow model registry, and the plots that runs log."""
