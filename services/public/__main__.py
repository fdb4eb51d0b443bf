"""`python -m services.public`: the public gRPC server; with `deliver`, its event consumers."""

import sys

from services.common.grpc_server import main
from services.public.config import Settings
from services.public.server import deliver, serve

if __name__ == "__main__":
    settings = Settings.from_env()
    main("services.public", lambda: serve(settings), lambda: deliver(settings), sys.argv[1:])
