"""``python -m jobmon_gateway``: the same command line as ``jobmon-gateway``."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="jobmon-gateway")
