"""What the per-file commands (predict, explain) share: a file that is no image is reported in its row, and the
command then ends with status 2."""

from __future__ import annotations

import sys


def unreadable_status(results: list[dict], done: str) -> int:
    """Exit status of a per-file command: 2, with one sentence, when some files could not be read as images."""
    failed = sum("error" in r for r in results)
    if failed:
        print(f"resnet: error: {failed} of {len(results)} file(s) could not be read as images (see above); the "
              f"others were {done}", file=sys.stderr)
        return 2
    return 0
