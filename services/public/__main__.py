"""`python -m services.public`: the public gRPC server; with `deliver`, its event consumers."""

from services.public.server import PROCESS

if __name__ == "__main__":
    PROCESS.main()
