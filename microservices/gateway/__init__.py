"""The gateway: the public HTTP API in front of the gRPC stage services, in one of three modes
(`orchestrated.py`, `split.py`, `chained.py`; `app.py` picks one by LAB_GATEWAY_MODE)."""
