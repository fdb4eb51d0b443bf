"""`python -m services.crm`: the crm gRPC server; with `deliver`, its event consumers."""

from services.crm.server import PROCESS

if __name__ == "__main__":
    PROCESS.main()
