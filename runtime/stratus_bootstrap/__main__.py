"""Entry point: ``python -m stratus_bootstrap``."""

from stratus_bootstrap.loop import main

if __name__ == "__main__":
    raise SystemExit(main())
