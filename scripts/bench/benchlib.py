"""Helpers shared by the lab benchmarks scripts/bench/failover and scripts/bench/peers.

What it owns: running the lab's commands (quietly, or with their output, always under a time
limit), the benchmark's lab (its own prefix, `scripts/lab down` on the way out, even after Ctrl-C,
SIGTERM or an exception), the release binary ($NNHA_BIN), bounded polling, the daemon's status and
log timestamps, and the one JSON line a run records. It never builds the lab's topology or
starts a daemon itself: scripts/lab and scripts/lab-ha do, so the tests, the demo and the
benchmarks all run the same setup.

Python 3.11, standard library only.
"""

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository; every command runs from there."""
VENV_PY = ROOT / ".venv" / "bin" / "python"
"""The stand-in nova-network's Python (scripts/setup makes the venv)."""
COMMAND_LIMIT_S = 900
"""No lab command may run longer (the longest, `lab-ha ready 300`, waits 300 s)."""


class BenchError(Exception):
    """A step of a benchmark failed; the message says which and why."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM: the benchmark stops, its lab is taken down, exit status 130."""


def _interrupt(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


def main(run, prefix):
    """Runs `run()` as a benchmark's whole program and exits with its status.

    SIGINT and SIGTERM raise `Interrupted` (so every `finally`, the lab's `down` first, runs),
    a `BenchError` is printed as "PREFIX: message" (exit 1), an interruption exits 130.
    """
    sys.stdout.reconfigure(line_buffering=True)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        status = run()
    except BenchError as err:
        print(f"{prefix}: {err}", file=sys.stderr)
        status = 1
    except Interrupted as why:
        print(f"{prefix}: interrupted ({why}); the lab is down", file=sys.stderr)
        status = 130
    sys.exit(status or 0)


def _text(cmd):
    return " ".join(str(c) for c in cmd)


def quiet(*cmd, timeout=COMMAND_LIMIT_S, **kw):
    """Runs a command; its output is shown only if it fails (then `BenchError`)."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    try:
        done = subprocess.run([str(c) for c in cmd], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace",
                              timeout=timeout, check=False, **kw)
    except subprocess.TimeoutExpired as err:
        raise BenchError(f"{_text(cmd)}: still running after {timeout} s, killed") from err
    except OSError as err:
        raise BenchError(f"{_text(cmd)}: {err}") from err
    if done.returncode != 0:
        raise BenchError(f"{_text(cmd)} failed:\n{done.stdout.rstrip()}")
    return done.stdout


def run(*cmd, timeout=COMMAND_LIMIT_S, **kw):
    """Runs a command with its output on ours (`scripts/lab-ha wait` says why it gave up)."""
    sys.stdout.flush()
    kw.setdefault("stdin", subprocess.DEVNULL)
    try:
        done = subprocess.run([str(c) for c in cmd], cwd=ROOT, timeout=timeout, check=False,
                              **kw)
    except subprocess.TimeoutExpired as err:
        raise BenchError(f"{_text(cmd)}: still running after {timeout} s, killed") from err
    except OSError as err:
        raise BenchError(f"{_text(cmd)}: {err}") from err
    if done.returncode != 0:
        raise BenchError(f"{_text(cmd)} failed (exit {done.returncode})")


def output(*cmd, timeout=60, any_status=False):
    """A command's stdout, or None when it fails (its stderr is dropped); with `any_status`,
    its stdout whatever its exit status (None only if it could not run)."""
    try:
        done = subprocess.run([str(c) for c in cmd], cwd=ROOT, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace",
                              timeout=timeout, check=False)
    except (subprocess.TimeoutExpired, OSError):
        return None
    return done.stdout if done.returncode == 0 or any_status else None


def other(node):
    """The other network server."""
    return "net2" if node == "net1" else "net1"


def require_root():
    if os.geteuid() != 0:
        raise BenchError("run as root (it builds network namespaces)")


def nnha_bin():
    """The release binary: $NNHA_BIN if set (e.g. a build made elsewhere), else
    `cargo build --release`. Exported as NNHA_BIN, so scripts/lab-ha runs it too."""
    given = os.environ.get("NNHA_BIN")
    if given:
        if not (os.path.isfile(given) and os.access(given, os.X_OK)):
            raise BenchError(f"NNHA_BIN={given} is not an executable")
        return given
    cargo = Path.home() / ".cargo" / "bin" / "cargo"
    quiet(cargo if cargo.exists() else "cargo", "build", "--locked", "--release", "--quiet",
          "--bin", "nova-network-ha", timeout=3600)
    path = str(ROOT / "target" / "release" / "nova-network-ha")
    os.environ["NNHA_BIN"] = path
    return path


def poll(check, secs, interval=0.1):
    """Calls `check()` until it is true, at most `secs` seconds and secs / interval times."""
    deadline = time.monotonic() + secs
    for _ in range(max(1, int(secs / interval))):
        if check():
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    return False


class Lab:
    """The benchmark's own lab: prefix TAG + PID (8 characters at most) in NNHA_LAB_PREFIX for
    every scripts/lab and scripts/lab-ha it runs; `with Lab(...)` takes it down on the way out,
    whatever the way (the `cleanup` callables run first)."""

    def __init__(self, tag, cleanup=()):
        self.prefix = f"{tag}{os.getpid()}"[:8]
        os.environ["NNHA_LAB_PREFIX"] = self.prefix
        self.state = ROOT / ".lab" / self.prefix
        self.ha = self.state / "ha"
        self.probe_json = self.state / "probe.json"
        self._cleanup = list(cleanup)

    def ns(self, node):
        return f"{self.prefix}-{node}"

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        # A second Ctrl-C must not stop the clean-up half way; the commands inherit the ignore.
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for step in self._cleanup:
                try:
                    step()
                except (BenchError, OSError):
                    pass
            output("scripts/lab", "down", timeout=300)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
        return False


def daemon_status(bin_path, config):
    """`nova-network-ha status --json` of a node, or None when it does not answer."""
    text = output(bin_path, "status", "--json", "--config", config, timeout=10)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def log_time(line):
    """The epoch seconds of a daemon log line (RFC 3339 first word), or None."""
    try:
        stamp = line.split()[0].replace("Z", "+00:00")
        return datetime.datetime.fromisoformat(stamp).timestamp()
    except (ValueError, IndexError):
        return None


def record(kind, run_no, probe_path, names=("vip", "vm"), **fields):
    """One run as a dict: the largest disconnection of each of the prober's targets `names`
    (by default the VIP and the VM) in its report (0 when there was no outage, None when the
    outage was still open at an edge of the probe window), then the given fields."""
    with open(probe_path) as f:
        probe = json.load(f)
    out = {"kind": kind, "run": run_no}
    for name in names:
        target = probe["targets"][name]
        out[name + "_ms"] = 0.0 if not target["outages"] else target["max_disconnection_ms"]
    out.update(fields)
    return out


def append_jsonl(path, row):
    """Appends one JSON line to `path` and prints it indented, as the run's progress."""
    line = json.dumps(row)
    with open(path, "a") as f:
        f.write(line + "\n")
    print("  " + line)


def read_jsonl(path):
    """Every JSON line of a file (blank lines skipped)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
