"""`python -m services.tickets`: run the tickets gRPC server."""

from services.common.grpc_server import run
from services.tickets.config import Settings
from services.tickets.server import serve

if __name__ == "__main__":
    run(serve(Settings.from_env()))
