"""`python -m microservices.postprocess`: run the postprocess stage service until SIGTERM."""

from microservices.postprocess.server import create_server
from microservices.grpc_server import serve

serve("postprocess", create_server)
