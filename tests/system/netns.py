"""Network namespaces for the fault tests: workers on their own addresses, with faults the
test can switch on and off.

Layout (one `Network` per test module, torn down even when a test fails):

    root namespace                               namespace dais-ft-<pid>-w<i>
    bridge dft<pid>b  10.213.X.1/24  ◀──veth──▶  eth0  10.213.X.(10+i)/24   (the worker)
      (the master binds its cluster and                10.213.X.(100+i)/24  (a relay, when used)
       heartbeat ports here)

Every name carries the pid of the test process, so a later run can find and remove what a
crashed run left behind (`cleanup_stale`: namespaces, links, and the processes in them).
The subnet's third byte X is picked free under a lock, so two runs on one host do not clash.
Only addresses assigned here are ever used.

Faults:
  - `partition(i)`: nftables inside the namespace drops every packet on eth0, both ways;
    `heal(i)` removes the table. `link_down(i)` / `link_up(i)` take the veth itself down.
  - `udp_loss(i, port, percent)`: nftables drops that share of UDP datagrams arriving for
    `port` on eth0 (`numgen random`, independent per packet); `dropped(i)` reads its counter.
    (`tc netem` is not available on this kernel, see DESIGN.md.)
  - `start_relay(i, port, delay_ms)`: a user-space UDP relay (this file run as a script) on
    the namespace's second address delays every datagram by `delay_ms` in both directions.
    A worker started with `--advertise relay_ip(i)` gets its heartbeats through it.

Processes are started with `setpriv --pdeathsig KILL` (a process started in a namespace dies
with the test process even if pytest is killed) and, for namespaces, `ip netns exec`, which
execs: the pid the test holds is the program's own pid, so `kill -9` hits the worker.

Run as a script: `python3 netns.py udp-relay --listen IP:PORT --target IP:PORT --delay-ms N`.
"""

import fcntl
import heapq
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

NS_PREFIX = "dais-ft-"
LINK_PREFIX = "dft"
NFT_PART = "dais_ft_part"
NFT_LOSS = "dais_ft_loss"
LOCK_PATH = "/tmp/dais-ft.lock"
STATE_DIR = "/tmp"


# ---- small helpers ----------------------------------------------------------------------------

def sh(args, ns=None, check=True, input_text=None, timeout=20):
    """Runs a command (a list), inside namespace `ns` when given; returns its stdout."""
    if ns is not None:
        args = ["ip", "netns", "exec", ns, *args]
    p = subprocess.run(args, capture_output=True, text=True, input=input_text, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def available():
    """(True, "") when namespaces, veth pairs and nftables can be used here, else (False, why)."""
    if os.geteuid() != 0:
        return False, "fault tests need root (network namespaces, veth pairs, nftables)"
    for tool in ("ip", "nft", "setpriv"):
        if shutil.which(tool) is None:
            return False, f"fault tests need `{tool}` (packages iproute2, nftables, util-linux)"
    probe = f"{NS_PREFIX}{os.getpid()}-probe"
    try:
        sh(["ip", "netns", "add", probe])
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        return False, f"`ip netns add` does not work here: {e}"
    try:
        sh(["nft", "add", "table", "inet", "probe"], ns=probe)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        return False, f"nftables does not work inside a namespace here: {e}"
    finally:
        sh(["ip", "netns", "del", probe], check=False)
    return True, ""


def _ns_pids(ns):
    out = sh(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in out.split() if x.isdigit()]


def _kill_ns_processes(ns):
    """SIGKILLs every process inside `ns` and waits (briefly) until they are gone."""
    for _ in range(50):
        pids = _ns_pids(ns)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def _state_path(tag):
    return os.path.join(STATE_DIR, f"{NS_PREFIX}{tag}.json")


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode("utf-8", "replace").split("\0")[:-1]
    except OSError:
        return None


def cleanup_stale():
    """Removes what a crashed earlier run left: its namespaces (and the processes inside),
    its links, and the processes its state file lists (when their command line still
    matches). Only names with our prefixes and a pid that no longer runs are touched."""
    me = os.getpid()
    for line in sh(["ip", "netns", "list"], check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(rf"^{re.escape(NS_PREFIX)}(\d+)-", name)
        if m and int(m.group(1)) != me and not pid_alive(int(m.group(1))):
            _kill_ns_processes(name)
            sh(["ip", "netns", "del", name], check=False)
    for line in sh(["ip", "-o", "link", "show"], check=False).splitlines():
        m = re.match(rf"^\d+:\s+({LINK_PREFIX}(\d+)(?:b|w\d+))[@:]", line)
        if m and int(m.group(2)) != me and not pid_alive(int(m.group(2))):
            sh(["ip", "link", "del", m.group(1)], check=False)
    for fn in os.listdir(STATE_DIR):
        m = re.match(rf"^{re.escape(NS_PREFIX)}(\d+)\.json$", fn)
        if not m or int(m.group(1)) == me or pid_alive(int(m.group(1))):
            continue
        path = os.path.join(STATE_DIR, fn)
        try:
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
            for entry in state.get("pids", []):
                if _cmdline(entry["pid"]) == entry["cmdline"]:
                    os.kill(entry["pid"], signal.SIGKILL)
        except (OSError, ValueError, KeyError, ProcessLookupError):
            pass
        try:
            os.unlink(path)
        except OSError:
            pass


# ---- processes --------------------------------------------------------------------------------

class Process:
    """A program started by the harness (in a namespace or in the root one), logging to a file."""

    def __init__(self, name, args, log_path, env=None, ns=None, on_start=None):
        self.name = name
        self.ns = ns
        self.args = list(args)
        self.log_path = log_path
        self.log = open(log_path, "ab")
        cmd = ["setpriv", "--pdeathsig", "KILL"]
        if ns is not None:
            cmd += ["ip", "netns", "exec", ns]
        cmd += self.args
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.started = time.monotonic()
        if on_start is not None:
            on_start(self)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        """Sends `sig` to the program itself (not a wrapper: setpriv and ip exec it)."""
        if self.alive():
            os.kill(self.p.pid, sig)

    def kill9(self):
        """kill -9 and reap; returns the monotonic time of the kill."""
        t = time.monotonic()
        self.signal(signal.SIGKILL)
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        return t

    def stop(self, timeout=5.0):
        """SIGCONT (it may be stopped) and SIGTERM, then SIGKILL after `timeout`."""
        if self.alive():
            try:
                os.kill(self.p.pid, signal.SIGCONT)
                os.kill(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        if not self.log.closed:
            self.log.close()
        return self.p.returncode

    def tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""


# ---- the network ------------------------------------------------------------------------------

class Network:
    """A bridge in the root namespace and `n` worker namespaces attached to it."""

    def __init__(self, n, logdir):
        self.n = n
        self.logdir = logdir
        self.tag = os.getpid()
        self.bridge = f"{LINK_PREFIX}{self.tag}b"
        self.subnet = None  # third byte X of 10.213.X.0/24
        self.procs = []
        self._up = False

    # names and addresses
    def ns(self, i):
        return f"{NS_PREFIX}{self.tag}-w{i}"

    def veth(self, i):
        return f"{LINK_PREFIX}{self.tag}w{i}"

    @property
    def host_ip(self):
        return f"10.213.{self.subnet}.1"

    def ns_ip(self, i):
        return f"10.213.{self.subnet}.{10 + i}"

    def relay_ip(self, i):
        return f"10.213.{self.subnet}.{100 + i}"

    # set-up and tear-down
    def up(self):
        cleanup_stale()
        with open(LOCK_PATH, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = set(int(x) for x in re.findall(r"inet 10\.213\.(\d+)\.",
                                                  sh(["ip", "-o", "-4", "addr", "show"])))
            start = self.tag % 200
            for k in range(254):
                x = (start + k) % 254 + 1
                if x not in used:
                    self.subnet = x
                    break
            else:
                raise RuntimeError("no free 10.213.X.0/24 subnet")
            self._up = True  # from here on, down() has something to undo
            sh(["ip", "link", "add", self.bridge, "type", "bridge"])
            sh(["ip", "addr", "add", f"{self.host_ip}/24", "dev", self.bridge])
        sh(["ip", "link", "set", self.bridge, "up"])
        for i in range(1, self.n + 1):
            ns = self.ns(i)
            sh(["ip", "netns", "add", ns])
            sh(["ip", "link", "add", self.veth(i), "type", "veth", "peer", "name", "eth0",
                "netns", ns])
            sh(["ip", "link", "set", self.veth(i), "master", self.bridge, "up"])
            sh(["ip", "addr", "add", f"{self.ns_ip(i)}/24", "dev", "eth0"], ns=ns)
            sh(["ip", "addr", "add", f"{self.relay_ip(i)}/24", "dev", "eth0"], ns=ns)
            sh(["ip", "link", "set", "eth0", "up"], ns=ns)
            sh(["ip", "link", "set", "lo", "up"], ns=ns)
        self._write_state()
        self._wait_reachable()

    def _wait_reachable(self, timeout=10.0):
        """The bridge port needs a moment (forwarding state) before packets pass."""
        deadline = time.monotonic() + timeout
        for i in range(1, self.n + 1):
            while True:
                out = sh(["ip", "-o", "link", "show", self.veth(i)], check=False)
                if "state UP" in out or "LOWER_UP" in out:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.veth(i)} did not come up: {out}")
                time.sleep(0.05)

    def down(self):
        """Stops every process, deletes the namespaces, links and the state file. Safe to
        call more than once and after a partial up()."""
        for p in reversed(self.procs):
            try:
                p.stop(timeout=3)
            except Exception:  # noqa: BLE001 - tear-down goes on whatever happened
                pass
        self.procs = []
        if not self._up:
            return
        for i in range(1, self.n + 1):
            ns = self.ns(i)
            _kill_ns_processes(ns)
            sh(["ip", "netns", "del", ns], check=False)
            sh(["ip", "link", "del", self.veth(i)], check=False)
        sh(["ip", "link", "del", self.bridge], check=False)
        try:
            os.unlink(_state_path(self.tag))
        except OSError:
            pass
        self._up = False

    def leftovers(self):
        """Names of this network's namespaces and links that still exist (for tests)."""
        left = [n for n in sh(["ip", "netns", "list"], check=False).split()
                if n.startswith(f"{NS_PREFIX}{self.tag}-")]
        left += [m for m in re.findall(rf"\d+:\s+({LINK_PREFIX}{self.tag}(?:b|w\d+))[@:]",
                                       sh(["ip", "-o", "link", "show"], check=False))]
        return left

    def _write_state(self):
        state = {"namespaces": [self.ns(i) for i in range(1, self.n + 1)],
                 "links": [self.bridge] + [self.veth(i) for i in range(1, self.n + 1)],
                 "pids": [{"pid": p.pid, "cmdline": _cmdline(p.pid)} for p in self.procs
                          if p.alive() and _cmdline(p.pid) is not None]}
        tmp = _state_path(self.tag) + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f)
        os.replace(tmp, _state_path(self.tag))

    # processes
    def spawn(self, name, args, env=None, i=None, logdir=None):
        """Starts `args` in worker namespace `i` (None: the root namespace), logging to
        `logdir`/`name`.log (default: the network's log directory)."""
        p = Process(name, args, os.path.join(logdir or self.logdir, f"{name}.log"), env=env,
                    ns=self.ns(i) if i is not None else None)
        self.procs.append(p)
        time.sleep(0.02)  # let exec happen, so the state file records the real command line
        self._write_state()
        return p

    def forget(self, proc):
        """Stops a process and drops it from the tear-down list."""
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    # faults
    def partition(self, i):
        """Every packet on the worker's eth0 is dropped, in and out (TCP and UDP)."""
        ns = self.ns(i)
        sh(["nft", "-f", "-"], ns=ns, input_text=(
            f"table inet {NFT_PART} {{\n"
            f"  chain in {{ type filter hook input priority -10; policy accept;\n"
            f"    iifname \"eth0\" counter drop\n  }}\n"
            f"  chain out {{ type filter hook output priority -10; policy accept;\n"
            f"    oifname \"eth0\" counter drop\n  }}\n"
            f"}}\n"))

    def heal(self, i):
        sh(["nft", "delete", "table", "inet", NFT_PART], ns=self.ns(i), check=False)

    def link_down(self, i):
        sh(["ip", "link", "set", self.veth(i), "down"])

    def link_up(self, i):
        sh(["ip", "link", "set", self.veth(i), "up"])

    def udp_loss(self, i, port, percent):
        """Drops `percent` % of the UDP datagrams that arrive on eth0 for `port` (one way:
        towards the namespace), each independently."""
        ns = self.ns(i)
        sh(["nft", "-f", "-"], ns=ns, input_text=(
            f"table inet {NFT_LOSS} {{\n"
            f"  chain in {{ type filter hook input priority -5; policy accept;\n"
            f"    iifname \"eth0\" udp dport {int(port)} counter\n"
            f"    iifname \"eth0\" udp dport {int(port)} numgen random mod 100 < {int(percent)}"
            f" counter drop\n  }}\n"
            f"}}\n"))

    def loss_counters(self, i):
        """(datagrams seen, datagrams dropped) by the udp_loss rules of namespace `i`."""
        out = sh(["nft", "-j", "list", "table", "inet", NFT_LOSS], ns=self.ns(i), check=False)
        try:
            doc = json.loads(out)
        except ValueError:
            return 0, 0
        counts = []
        for item in doc.get("nftables", []):
            rule = item.get("rule")
            if rule is None:
                continue
            for e in rule.get("expr", []):
                if "counter" in e:
                    counts.append(e["counter"]["packets"])
        return (counts[0], counts[1]) if len(counts) >= 2 else (0, 0)

    def clear_faults(self, i):
        sh(["nft", "delete", "table", "inet", NFT_PART], ns=self.ns(i), check=False)
        sh(["nft", "delete", "table", "inet", NFT_LOSS], ns=self.ns(i), check=False)
        self.link_up(i)

    def start_relay(self, i, port, delay_ms, target_port=None, logdir=None):
        """A UDP relay in namespace `i`: relay_ip(i):port ⇄ ns_ip(i):target_port (default
        `port`), each datagram delayed by `delay_ms`. Returns once it is bound."""
        target_port = port if target_port is None else target_port
        p = self.spawn(f"relay-w{i}", [sys.executable, os.path.abspath(__file__), "udp-relay",
                                       "--listen", f"{self.relay_ip(i)}:{port}",
                                       "--target", f"{self.ns_ip(i)}:{target_port}",
                                       "--delay-ms", str(delay_ms)], i=i, logdir=logdir)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if "relay ready" in p.tail(5):
                return p
            if not p.alive():
                break
            time.sleep(0.02)
        raise RuntimeError(f"UDP relay did not start:\n{p.tail()}")


# ---- the UDP delay relay (runs as its own process inside a namespace) --------------------------

def _hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def udp_relay(listen, target, delay_ms):
    """Forwards datagrams between the peer that last sent from elsewhere (the master) and
    `target` (the worker), each one `delay_ms` later, in send order. Runs until SIGTERM."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(listen)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    delay = delay_ms / 1000.0
    queue = []  # (due, seq, data, dest)
    seq = 0
    peer = None
    forwarded = 0
    print(f"relay ready {listen[0]}:{listen[1]} -> {target[0]}:{target[1]} "
          f"delay {delay_ms} ms", flush=True)
    while not stop:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, data, dest = heapq.heappop(queue)
            try:
                sock.sendto(data, dest)
                forwarded += 1
            except OSError:
                pass
        wait = max(0.0, queue[0][0] - now) if queue else 0.5
        try:
            ready, _, _ = select.select([sock], [], [], wait)
        except InterruptedError:
            continue
        if not ready:
            continue
        try:
            data, src = sock.recvfrom(65536)
        except OSError:
            continue
        if src == target:
            dest = peer
        else:
            peer = src
            dest = target
        if dest is not None:
            seq += 1
            heapq.heappush(queue, (time.monotonic() + delay, seq, data, dest))
    print(f"relay stopped after {forwarded} datagrams", flush=True)


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(prog="netns.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("udp-relay", help="delay UDP datagrams between two endpoints")
    r.add_argument("--listen", required=True)
    r.add_argument("--target", required=True)
    r.add_argument("--delay-ms", type=float, default=50.0)
    sub.add_parser("cleanup", help="remove what crashed fault-test runs left behind")
    a = ap.parse_args(argv)
    if a.cmd == "udp-relay":
        udp_relay(_hostport(a.listen), _hostport(a.target), a.delay_ms)
    elif a.cmd == "cleanup":
        cleanup_stale()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
