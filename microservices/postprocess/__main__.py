"""`python -m microservices.postprocess`: run the postprocess stage service until SIGTERM."""

from microservices.grpc_server import serve
from microservices.postprocess.server import create_server

serve("postprocess", create_server)
