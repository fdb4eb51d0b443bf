"""`python -m services.tickets`: the tickets gRPC server; with `deliver`, its event consumers."""

from services.tickets.server import PROCESS

if __name__ == "__main__":
    PROCESS.main()
