"""Microservices: a Flask gateway calling one gRPC service per pipeline stage.

Generated protobuf code lives in `microservices.generated` (built by `make protos`, not committed).

gRPC's fork handlers are switched off here, before the serving code imports `grpc`: all of it
lives in this package, and tests/conftest.py imports the package first. (The bench's floor
processes import grpc directly, but start no process of their own.) The Linux wheels build the C
core with fork support on, so it hooks every fork(); with a channel busy in another thread, the
child of a fork()+exec (each `subprocess.Popen`, which is how the lab starts its servers and load
generators) can restart a poller on an epoll fd that close_fds has just closed, and abort (SIGABRT,
exit -6) before it execs: grpc/grpc#43055, seen here as a chained stage that "exited with code -6
before it was ready". No process of ours forks and then uses gRPC in the child (gunicorn masters
never load it; channels are made after the fork), so the handlers only add that risk. The core
reads the variable once, when it loads; a caller's own setting wins.
"""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
