"""The monolith: one Flask app that runs all three pipeline stages in process."""
