"""`python -m pipeline.identify <verb>`: the identification stage's command line."""

from pipeline.identify.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
