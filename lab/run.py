"""`make run ARCH=...`: start an architecture in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import json
import sys
import time

from lab.launch import ARCHITECTURES, launch
from lab.supervisor import StopSignals, run_in_foreground


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=ARCHITECTURES, default="monolith")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)

    started = time.monotonic()

    def serve(stop: StopSignals) -> int:
        with launch(args.arch, port=args.port, host=args.host) as deployment:
            pids = deployment.supervisor.pids()
            print(f"{args.arch} ready in {time.monotonic() - started:.1f}s at {deployment.url} "
                  f"({len(pids)} processes). Try:\n"
                  f"  curl -s {deployment.url}/v1/predict -H 'Content-Type: application/json' "
                  f"-d '{json.dumps({'instances': [EXAMPLE]})}'\n"
                  "Press Ctrl-C to stop.", flush=True)
            return stop.serve(deployment.supervisor)

    return run_in_foreground(serve)


EXAMPLE = {"island": "Biscoe", "bill_length_mm": 48.6, "bill_depth_mm": 16.0, "flipper_length_mm": 230.0,
           "body_mass_g": 5800.0, "sex": "male", "year": 2009}

if __name__ == "__main__":
    sys.exit(main())
