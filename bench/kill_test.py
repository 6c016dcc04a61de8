"""Reliability: 20 kill -9 at random moments during `dmdesk generate --wait` (see
dmdesk/testing/crash.py); prints kills survived, pairs lost, pairs duplicated.

    python bench/kill_test.py [--rounds 20] [--seed N]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from dmdesk.testing.crash import kill_round
from dmdesk.testing.llm_server import FakeLLMServer
from dmdesk.vectorstore.service import create_local_store


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--chunks", type=int, default=300)
    args = p.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="dmdesk-kill-"))
    store = root / "store"
    create_local_store(
        store,
        [f"c{i}" for i in range(args.chunks)],
        [f"Chunk {i} explains topic {i}." for i in range(args.chunks)],
    )
    survived = lost = duplicated = 0
    with FakeLLMServer(latency_s=0.05) as srv:
        for r in range(args.rounds):
            delay = round(rng.uniform(0.6, 3.5), 2)
            res = kill_round(root / f"r{r}", store, srv.base_url, delay, args.chunks)
            survived += res.ok
            lost += res.lost
            duplicated += res.duplicated
            print(
                f"round {r + 1:2d}: kill at {delay:.2f} s, restart saw {res.status_after_kill:<18}"
                f" -> {res.final_status}, lost {res.lost}, duplicated {res.duplicated}, "
                f"counters {'ok' if res.counters_ok else 'WRONG'}",
                flush=True,
            )
    print(
        f"seed {args.seed}: kills survived {survived}/{args.rounds}, pairs lost {lost}, "
        f"pairs duplicated {duplicated}"
    )
    return 0 if survived == args.rounds else 1


if __name__ == "__main__":
    raise SystemExit(main())
