"""`python -m services.tickets`: the tickets gRPC server; with `deliver`, its event consumers."""

import sys

from services.common.grpc_server import main
from services.tickets.config import Settings
from services.tickets.server import deliver, serve

if __name__ == "__main__":
    settings = Settings.from_env()
    main("services.tickets", lambda: serve(settings), lambda: deliver(settings), sys.argv[1:])
