"""Preprocess stage service: raw instances -> feature matrix."""
