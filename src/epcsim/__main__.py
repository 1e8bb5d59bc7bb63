"""``python -m epcsim``: the same as the ``epcsim`` command."""

from epcsim.cli import main

if __name__ == "__main__":
    main()
