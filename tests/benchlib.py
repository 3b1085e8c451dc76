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


def in_netns(name, cmd):
    """`cmd` in network namespace `name`, its network only (`ip netns exec`
    would also hide the FUSE mount in a private mount namespace)."""
    return ["nsenter", f"--net=/var/run/netns/{name}", *cmd]


def spawn_in(name, cmd, log, env=None):
    """`cmd` started in namespace `name` in a session of its own, output to `log`."""
    return subprocess.Popen(in_netns(name, cmd), stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **(env or {})})


def fresh_netns(name):
    """Namespace `name` made anew with only loopback, up."""
    drop_netns(name)
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(in_netns(name, ["ip", "link", "set", "lo", "up"]), check=True)


def drop_netns(name):
    subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)
