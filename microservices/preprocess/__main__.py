"""`python -m microservices.preprocess`: run the preprocess stage service until SIGTERM."""

from microservices.grpc_server import serve
from microservices.preprocess.server import create_server

serve("preprocess", create_server)
