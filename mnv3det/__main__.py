"""`python -m mnv3det` works like the `mnv3det` console script."""

from mnv3det.cli import main

if __name__ == "__main__":
    main()
