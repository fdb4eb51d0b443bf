"""`python -m hydractl`."""

from hydractl.cli import main

main()
