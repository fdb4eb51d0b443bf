"""`python -m services.crm`: the crm gRPC server; with `deliver`, its event consumers."""

import sys

from services.common.grpc_server import main
from services.crm.config import Settings
from services.crm.server import deliver, serve

if __name__ == "__main__":
    settings = Settings.from_env()
    main("services.crm", lambda: serve(settings), lambda: deliver(settings), sys.argv[1:])
