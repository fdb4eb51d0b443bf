"""`python -m edge.gatekeeper`: run the gatekeeper gRPC server."""

from edge.gatekeeper.config import Settings
from edge.gatekeeper.server import serve
from services.common.grpc_server import run

if __name__ == "__main__":
    run(serve(Settings.from_env()))
