"""benchmarks/soak.py, run briefly: the samples it writes, its plot, and that the workers
it SIGKILLs are restarted by the library while the sampler watches."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COLUMNS = ["t_s", "event", "iterations", "env_steps", "restarts", "healthy",
           "driver_rss_mib", "tree_rss_mib", "tree_pss_mib", "driver_fds", "tree_fds",
           "driver_threads", "tree_threads", "children", "shm_entries", "shm_mib",
           "rl_shm_entries", "rl_shm_mib"]


def test_soak_kills_workers_records_the_tree_and_sees_them_restarted(tmp_path):
    # 21 s per algorithm: one kill at 15 s, its post-kill sample at 19 s.
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "soak.py"), "--minutes", "0.35",
         "--kill-every", "15", "--sample-every", "2", "--warmup", "10", "--settle", "4",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=240, cwd=REPO)
    out = run.stdout + run.stderr
    # 0 passes, 1 is a failed criterion; anything else (a crash, bad arguments) is a bug.
    assert run.returncode in (0, 1), out
    assert "PASS" in run.stdout or "FAIL" in run.stdout, out
    for algo in ("ppo", "impala"):
        png = tmp_path / f"soak_{algo}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with open(tmp_path / f"soak_{algo}.csv", newline="") as f:
            reader = csv.DictReader(f)
            assert reader.fieldnames == COLUMNS
            rows = list(reader)
        regular = [r for r in rows if r["event"] == ""]
        assert len(regular) >= 8, rows  # every 2 s over 21 s
        assert all(int(r["children"]) >= 2 and float(r["driver_rss_mib"]) > 0
                   and int(r["tree_fds"]) > int(r["driver_fds"]) for r in regular), rows
        assert int(rows[-1]["env_steps"]) > 0 and int(rows[-1]["iterations"]) > 0
        pre = [r for r in rows if r["event"] == "pre_kill"]
        post = [r for r in rows if r["event"] == "post_kill"]
        assert len(pre) == len(post) == 1, rows
        # The kill was seen and healed: one more restart, both workers healthy again.
        assert int(post[0]["restarts"]) == int(pre[0]["restarts"]) + 1, (pre, post)
        assert int(post[0]["healthy"]) == 2, post
        summary = [line for line in run.stdout.splitlines() if line.startswith(f"{algo}: ")]
        assert len(summary) == 1 and "1 kills, 1 restarts" in summary[0], out
