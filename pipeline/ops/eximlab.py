"""A private Exim 4.96 instance on loopback, for the integration tests.

Debian's `postfix` and `exim4-daemon-light` conflict (both provide mail-transport-agent), so Exim
is not installed with apt: `make install-mta` takes its packages with `apt-get download` and
unpacks them with `dpkg-deb -x` into /opt/mailsla/exim4 (`exim_binary` finds it there, or
MAILSLA_EXIM, or an installed /usr/sbin/exim4). The binary looks up its compiled-in user
`Debian-exim` at start, which `make install-mta` creates. It runs with its own configuration
(`-C`), spool and log directory; as root with `-C` it drops to that user ("exim user lost
privilege for using -C option" in its log: harmless, it needs no more here), so nothing under
/etc is written. Two daemons: `-bd` receives (with `queue_only`, so nothing is delivered at once)
and `-q1s` runs the queue every second: stopping that one (SIGSTOP) is a stopped queue runner.
Mail goes to an `smtp-sink` (from the postfix package), mail for defer.test to a sink that answers 450.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from pipeline.ops.mtalab import free_port, lab_dir, run_on_tty, smtp_sink, stop_all, tail, wait_port

CACHE = Path("/opt/mailsla/exim4")  # not under /root: the daemons re-exec it as Debian-exim
# The MTA-side settings the README gives an Exim administrator, plus what makes a private instance
CONFIG = """\
exim_path = {exim}
primary_hostname = {host}.test
spool_directory = {root}/spool
log_file_path = {root}/log/%slog
daemon_smtp_ports = {port}
local_interfaces = 127.0.0.1
tls_advertise_hosts =
keep_environment =
log_selector = +millisec +deliver_time +queue_time +pid
log_timezone = true
queue_only = true
acl_smtp_rcpt = acl_check_rcpt
acl_smtp_data = acl_check_data
.ifdef QUEUE_RUNNER
notifier_socket = {root}/spool/queue-runner.notify
.endif

begin acl
acl_check_rcpt:
  deny    domains = reject.test
  accept
acl_check_data:
  deny    condition = ${{if def:h_X-Test-Reject:}}
          message = rejected by the lab's data ACL
  warn condition = ${{if def:h_X-Mailsla-Class:}}
       logwrite = header X-Mailsla-Class: $h_X-Mailsla-Class:
  warn condition = ${{if def:h_X-Mailsla-Priority:}}
       logwrite = header X-Mailsla-Priority: $h_X-Mailsla-Priority:
  accept

begin routers
to_defer:
  driver = manualroute
  domains = defer.test
  route_list = * 127.0.0.1
  transport = defer_smtp
  self = send
to_sink:
  driver = manualroute
  route_list = * 127.0.0.1
  transport = sink_smtp
  self = send

begin transports
sink_smtp:
  driver = smtp
  port = {sink_port}
defer_smtp:
  driver = smtp
  port = {defer_port}

begin retry
* * F,1h,2s

begin authenticators
plain_server:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${{if eq{{$auth3}}{{${{lookup{{$auth2}}lsearch{{{root}/passwd}}}}}}}}
  server_set_id = $auth2
"""


def exim_binary() -> Path | None:
    for candidate in (os.environ.get("MAILSLA_EXIM"), str(CACHE / "usr" / "sbin" / "exim4"), "/usr/sbin/exim4"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def missing() -> str | None:
    """None when a private Exim can run here, else the one-line reason naming the package."""
    exim = exim_binary()
    if exim is None:
        return f"needs the Debian package exim4-daemon-light (no exim4 in {CACHE} or /usr/sbin; `make install-mta`)"
    try:
        import pwd

        pwd.getpwnam("Debian-exim")
    except KeyError:
        return "needs the user Debian-exim of the Debian package exim4-base (`make install-mta` creates it)"
    if shutil.which("smtp-sink") is None:
        return "needs the Debian package postfix (its smtp-sink is the relay sink; `make install-mta`)"
    if os.geteuid() != 0:
        return "needs root (the private Exim daemons start as root)"
    code, out = run_on_tty([str(exim), "-bV"], timeout=20)
    if "Exim version 4.96" not in out:
        return f"needs Exim 4.96 from exim4-daemon-light ({exim} -bV: {out.strip().splitlines()[:1]})"
    return None


class EximLab:
    """One private instance: `start`, `pause_queue`/`resume_queue`, `delete` (-Mrm), `stop`, `remove`."""

    def __init__(self, host: str = "mta2", accounts: dict[str, str] | None = None) -> None:
        self.root, self.host = lab_dir(host), host
        self.exim = exim_binary()
        self.port, self.sink_port, self.defer_port = free_port(), free_port(), free_port()
        self.accounts = accounts or {}
        self.conf, self.log = self.root / "exim.conf", self.root / "log" / "mainlog"
        self.daemons: dict[str, int] = {}
        self.sinks: list[subprocess.Popen] = []

    def start(self) -> "EximLab":
        for d in ("spool", "log"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
            shutil.chown(self.root / d, "Debian-exim", "Debian-exim")
        (self.root / "passwd").write_text("".join(f"{u}:{p}\n" for u, p in self.accounts.items()))
        self.conf.write_text(CONFIG.format(exim=self.exim, host=self.host, root=self.root, port=self.port,
                                           sink_port=self.sink_port, defer_port=self.defer_port))
        self.sinks = [smtp_sink(self.sink_port), smtp_sink(self.defer_port, soft_reject="RCPT")]
        for name, args in (("receiver", ["-bd"]), ("queue", ["-DQUEUE_RUNNER", "-q1s"])):
            pidfile = self.root / f"{name}.pid"
            code, out = run_on_tty([str(self.exim), "-C", str(self.conf), *args, "-oP", str(pidfile)])
            if code != 0:
                raise RuntimeError(f"exim {' '.join(args)} exited {code}: {out.strip()[-2000:]}")
            self.daemons[name] = self._read_pid(pidfile)
        if not wait_port(self.port, 30):
            raise RuntimeError(f"exim did not listen on 127.0.0.1:{self.port}: {self.log_tail()}")
        return self

    @staticmethod
    def _read_pid(path: Path) -> int:
        import time

        for _ in range(100):
            if path.exists() and path.read_text().strip():
                return int(path.read_text().split()[0])
            time.sleep(0.1)
        raise RuntimeError(f"exim wrote no pid file {path}")

    def pause_queue(self) -> None:
        """SIGSTOP the queue-runner daemon: mail is still received, no delivery starts."""
        os.kill(self.daemons["queue"], signal.SIGSTOP)

    def resume_queue(self) -> None:
        if "queue" in self.daemons:
            try:
                os.kill(self.daemons["queue"], signal.SIGCONT)
            except ProcessLookupError:
                pass

    def delete(self, exim_id: str) -> None:
        """`exim -Mrm ID`: the message is deleted from the queue."""
        subprocess.run([str(self.exim), "-C", str(self.conf), "-Mrm", exim_id], check=True, capture_output=True)

    def queue_ids(self) -> list[str]:
        from pipeline.core.mta.exim import is_exim_id

        out = subprocess.run([str(self.exim), "-C", str(self.conf), "-bp"], capture_output=True, text=True).stdout
        return [t for line in out.splitlines() for t in line.split() if is_exim_id(t)]

    def stop(self) -> None:
        self.resume_queue()
        for pid in self.daemons.values():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.daemons = {}
        stop_all(self.sinks)
        self.sinks = []

    def remove(self) -> None:
        """Stop, and delete the instance's directory (spool, logs, config)."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, n: int = 40) -> str:
        return tail(self.log, n)

    def __enter__(self) -> "EximLab":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
