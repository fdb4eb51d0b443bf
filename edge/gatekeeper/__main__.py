"""`python -m edge.gatekeeper`: run the gatekeeper gRPC server."""

import asyncio

from edge.gatekeeper.config import Settings
from edge.gatekeeper.server import serve

if __name__ == "__main__":
    asyncio.run(serve(Settings.from_env()))
