"""`python -m services.instances`: the instances gRPC server; with `deliver`, its event consumers."""

from services.instances.server import PROCESS

if __name__ == "__main__":
    PROCESS.main()
