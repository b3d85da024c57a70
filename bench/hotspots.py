"""Where a Python process spent its time, from py-spy's collapsed stacks (``--format raw``).

Prints, for the functions that matter most, the share of all samples spent in them or
below them (inclusive) and in them alone (self), so a profile of the operator taken by
``bench/vs_argo.py --py-spy FILE`` reads as a list of costs.

Run: .venv/bin/python bench/hotspots.py FILE [--top 40] [--match kopf]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frames(stack: str) -> list[str]:
    """``func (path/to/module.py:line)`` frames -> ``module.func`` names, outermost first."""
    out = []
    for frame in stack.split(";"):
        match = _FRAME.match(frame.strip())
        if not match:
            out.append(frame.strip())
            continue
        module = match.group("file").replace("/", ".").removesuffix(".py")
        for marker in ("site-packages.", "operator.", "lib.python3"):
            if marker in module:
                module = module.split(marker, 1)[1]
        out.append(f"{module}.{match.group('func')}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default="", help="only functions whose name has this")
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in args.file.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        names = frames(stack)
        for name in set(names):
            inclusive[name] += n
        if names:
            own[names[-1]] += n
    print(f"{total} samples\n\n{'inclusive':>9} {'self':>6}  function")
    shown = 0
    for name, n in inclusive.most_common():
        if args.match not in name:
            continue
        print(f"{n / total * 100:8.1f}% {own[name] / total * 100:5.1f}%  {name}")
        shown += 1
        if shown >= args.top:
            break


if __name__ == "__main__":
    main()
