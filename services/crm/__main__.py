"""`python -m services.crm`: run the crm gRPC server."""

from services.common.grpc_server import run
from services.crm.config import Settings
from services.crm.server import serve

if __name__ == "__main__":
    run(serve(Settings.from_env()))
