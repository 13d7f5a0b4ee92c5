"""Tracking: the MLflow store, one run per job, a parent run per sweep, lost runs, and the report."""
