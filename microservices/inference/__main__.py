"""`python -m microservices.inference`: run the inference stage service until SIGTERM."""

from microservices.grpc_server import serve
from microservices.inference.server import create_server

serve("inference", create_server)
