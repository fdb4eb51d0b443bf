"""`python -m services.instances`: the instances gRPC server; with `deliver`, its event consumers."""

import sys

from services.common.grpc_server import main
from services.instances.config import Settings
from services.instances.server import deliver, serve

if __name__ == "__main__":
    settings = Settings.from_env()
    main("services.instances", lambda: serve(settings), lambda: deliver(settings), sys.argv[1:])
