"""What the on-demand benchmark scripts (rss.py, upload.py, web_bench.py,
probe_bench.py, peers_bench.py, library_bench.py) share."""
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


def status(pid, key):
    """A /proc/PID/status field in kB (VmRSS, VmHWM), 0 if absent."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def cpu_s(pid):
    """User + system CPU seconds of `pid` so far."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def mount_pid(mnt):
    """The pid of the btt-mount serving `mnt`, or None."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"btt-mount") and mnt.encode() in cmd:
                return pid
    return None
