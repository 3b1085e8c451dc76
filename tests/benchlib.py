"""What the on-demand benchmark scripts (rss.py, upload.py, web_bench.py,
probe_bench.py) share."""
import os
import signal
import subprocess


def stop(p):
    """Ends a process started in a session of its own (start_new_session),
    with its children: SIGTERM, then SIGKILL after 20 s."""
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
