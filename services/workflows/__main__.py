"""`python -m services.workflows`: the workflows gRPC server."""

from services.workflows.server import PROCESS

if __name__ == "__main__":
    PROCESS.main()
