"""`python -m edge.gatekeeper`: run the gatekeeper gRPC server."""

from edge.gatekeeper.server import PROCESS

if __name__ == "__main__":
    PROCESS.main()
