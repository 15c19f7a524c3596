"""Postprocess stage service: probabilities -> labelled predictions."""
