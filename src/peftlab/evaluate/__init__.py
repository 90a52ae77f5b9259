"""Evaluation: metrics from maintained libraries, and generation health checks."""
