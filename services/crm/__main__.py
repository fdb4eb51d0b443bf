"""`python -m services.crm`: run the crm gRPC server."""

import asyncio

from services.crm.config import Settings
from services.crm.server import serve

if __name__ == "__main__":
    asyncio.run(serve(Settings.from_env()))
