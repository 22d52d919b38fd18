"""Summarise a py-spy profile written by `bench/run.py --profile DIR` (collapsed stacks):

    python bench/profile_tree.py DIR/tui-connector-1.txt                  # top self time
    python bench/profile_tree.py DIR/tui-connector-1.txt SourceHttp.fetch  # the tree below it

Percentages are of every sample in the file (py-spy ran with --gil: only the thread holding
the GIL is sampled, so they are shares of the Python CPU time).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_LOCATION = re.compile(r" \((.*?)(?:\.py)?:\d+\)$")


def _short(frame: str) -> str:
    """`name (/long/path/package/module.py:12)` as `name (package/module)`."""
    return _LOCATION.sub(lambda m: " (" + "/".join(m.group(1).split("/")[-2:]) + ")", frame)


def stacks(path: Path) -> list[tuple[list[str], int]]:
    """(frames outermost first, samples) per line; frames as `function (package/module)`."""
    parsed = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            frames = [_short(frame) for frame in stack.split(";")]
            parsed.append((frames, int(count)))
    return parsed


def top_self(samples: list[tuple[list[str], int]], limit: int = 30) -> None:
    total = sum(count for _, count in samples)
    own: Counter[str] = Counter()
    for frames, count in samples:
        own[frames[-1]] += count
    print(f"{total} samples; the functions they were in:")
    for frame, count in own.most_common(limit):
        print(f"{count / total:6.1%}  {frame}")


def tree(
    samples: list[tuple[list[str], int]], root: str, threshold: float = 0.005, depth: int = 6
) -> None:
    """The calls below the innermost frame named `root`, with their share of all samples."""
    total = sum(count for _, count in samples)
    counts: Counter[tuple[str, ...]] = Counter()
    for frames, count in samples:
        hits = [i for i, frame in enumerate(frames) if frame.split(" (")[0] == root]
        if not hits:
            continue
        below = tuple(frames[hits[-1] + 1 : hits[-1] + 1 + depth])
        counts[()] += count
        for length in range(1, len(below) + 1):
            counts[below[:length]] += count
    print(f"{counts[()] / total:6.1%}  {root}")
    # Depth first, the heaviest call first at every level.
    for path in sorted(counts, key=lambda p: [(-counts[p[: i + 1]], p[i]) for i in range(len(p))]):
        if path and counts[path] / total >= threshold:
            print(f"{counts[path] / total:6.1%}  {'  ' * len(path)}{path[-1]}")


def main() -> None:
    path = Path(sys.argv[1])
    samples = stacks(path)
    if len(sys.argv) > 2:
        tree(samples, sys.argv[2])
    else:
        top_self(samples)


if __name__ == "__main__":
    main()
