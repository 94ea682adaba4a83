#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A command's wall time and its own peak resident memory, for the tests and benchmarks that bound it.

    scripts/peak_rss.py REPORT_JSON -- COMMAND [ARG...]

Why a separate process: Linux carries a process's peak RSS across exec (the kernel keeps the larger of the old and
the new image's high-water mark, fs/exec.c), and Python's subprocess starts children with vfork, whose "old image" is
the parent's own memory. So `os.wait4` on a child of a test runner reports the runner's peak whenever that is larger
(a pytest process that built a 1 GB array reports >= 1 GB for `/bin/true`). This script is a small process that
fork()s (its child's old image is this script, about 10 MB resident), execs the command and wait4()s it: the peak it
reports is the command's own, overstated by at most this script's resident size, never understated.

measured(cmd) runs that from Python and returns (seconds, peak bytes, exit code). Standard library only.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measured(cmd: list[str], stdout=None, stderr=None) -> tuple[float, int, int]:
    """Runs cmd through this script: its wall time (fork to exit), its own peak RSS in bytes, its exit code."""
    with tempfile.TemporaryDirectory(prefix="veil-rss-") as d:
        report = Path(d) / "report.json"
        subprocess.run([sys.executable, __file__, str(report), "--", *cmd], stdout=stdout, stderr=stderr, check=False)
        if not report.exists():
            raise RuntimeError(f"peak_rss.py could not run {cmd[0]}")
        r = json.loads(report.read_text())
    return r["seconds"], r["peak_rss_bytes"], r["exit_code"]


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write(__doc__)
        return 2
    report, cmd = Path(argv[1]), argv[3:]
    t0 = time.perf_counter()
    try:
        pid = os.fork()
    except OSError as e:
        sys.stderr.write(f"peak_rss.py: cannot fork: {e}\n")
        return 1
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        except OSError as e:
            sys.stderr.write(f"peak_rss.py: cannot run {cmd[0]}: {e}\n")
        os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    report.write_text(json.dumps({"seconds": seconds, "peak_rss_bytes": usage.ru_maxrss * 1024, "exit_code": code}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
