"""`python -m services.instances`: run the instances gRPC server."""

from services.common.grpc_server import run
from services.instances.config import Settings
from services.instances.server import serve

if __name__ == "__main__":
    run(serve(Settings.from_env()))
