"""`python -m pipeline <verb>`: every Snakemake rule is one call of this command line."""

from pipeline.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
