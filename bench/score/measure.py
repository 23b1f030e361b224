#!/usr/bin/env python3
"""Run one command and report its wall time and peak memory as one JSON line.

    python3 bench/score/measure.py [--label NAME] -- COMMAND [ARG...]

Prints `{"label", "argv", "rc", "wall_s", "user_s", "sys_s", "max_rss_kib", "stdout"}` on
stdout; the command's own stdout is captured into `stdout` (and echoed to stderr), its
stderr passes through. `max_rss_kib` is the child's peak resident set size from
`getrusage(RUSAGE_CHILDREN).ru_maxrss` (KiB on Linux): this wrapper starts exactly one
child, so that is the command's own peak. Standard library only (the system python3).
Used by bench/score/run.sh; a benchmark helper, nothing is asserted.
"""

import argparse
import json
import resource
import subprocess
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not argv:
        parser.error("no command given")

    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    sys.stderr.write(proc.stdout)
    print(
        json.dumps(
            {
                "label": args.label,
                "argv": argv,
                "rc": proc.returncode,
                "wall_s": wall,
                "user_s": usage.ru_utime,
                "sys_s": usage.ru_stime,
                "max_rss_kib": usage.ru_maxrss,
                "stdout": proc.stdout.strip(),
            }
        ),
        flush=True,
    )
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
