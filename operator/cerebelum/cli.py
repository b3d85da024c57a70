"""The ``cerebelum`` command.

For now it only reports its version; the workflow commands (render, apply, status, watch,
approve, reject) arrive with the SDK.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from cerebelum import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cerebelum", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cerebelum {__version__}")
    parser.parse_args(argv)
    print(f"cerebelum {__version__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
