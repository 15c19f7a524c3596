"""`python -m microservices.preprocess`: run the preprocess stage service until SIGTERM."""

from microservices.preprocess.server import create_server
from microservices.grpc_server import serve

serve("preprocess", create_server)
