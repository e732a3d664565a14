"""Decode the compact events of bench/fsm.py's session `k` times (for instruction counts).

Run under callgrind in a tree of each revision, once with k = 1 and once with k = 0 (the
log's generation and the imports alone); the difference over the number of events is the
instructions per decoded compact event:

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/decode_compact.py 1   # and 0
"""

from __future__ import annotations

import os
import sys

sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), "bench")]

from bench import fsm  # the tree being measured, first on the path
from schemas.codec import decode_event, encode_event_compact


def main() -> None:
    log, _ = fsm.session_log(2000, fsm.registry())
    blobs = [encode_event_compact(e) for e in log]
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
        for blob in blobs:
            decode_event(blob)
    print(f"{len(blobs)} compact events")


if __name__ == "__main__":
    main()
