"""`python -m galaxylib ...` is the command line (see galaxylib/cli.py)."""

from galaxylib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
