"""`python -m services.public`: run the public website surface's gRPC server."""

from services.common.grpc_server import run
from services.public.config import Settings
from services.public.server import serve

if __name__ == "__main__":
    run(serve(Settings.from_env()))
