"""`python -m microservices.inference`: run the inference stage service until SIGTERM."""

from microservices.inference.server import create_server
from microservices.grpc_server import serve

serve("inference", create_server)
