"""A private Postfix instance on loopback, for the integration tests and `make demo-postfix`.

Everything lives under one fresh directory in /tmp (`lab_dir`): its own `config_directory` (main.cf, master.cf without
chroot, header_checks, the Cyrus SASL config and sasldb), queue, `data_directory` (owned by
postfix), and `maillog_file` (with `maillog_file_prefixes` naming that directory). It relays all
mail to an `smtp-sink` on another loopback port, and mail for `defer.test` to a second sink that
answers 450 (a deferred delivery). It runs as root (`postfix -c DIR start`); the system's own
Postfix, if any, is not touched (as root, Postfix 3.7 needs no `alternate_config_directories`
entry in /etc/postfix/main.cf: checked here with 3.7.11). Postfix writes its startup errors to
syslog, which swallows them on a machine without a syslog daemon, so `start` runs `postfix` with a
terminal on stderr (then it prints them too) and raises them.

Needs the Debian packages postfix (postfix, smtp-sink, smtp-source), sasl2-bin (saslpasswd2) and
libsasl2-modules (PLAIN): `missing()` says which one is not there.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from pipeline.ops.mtalab import free_port, lab_dir, pids_of_children, run_on_tty, smtp_sink, stop_all, tail, wait_port

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""
# The MTA-side settings the README gives a Postfix administrator, plus what makes a private instance
MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
{maillog}
myhostname = {host}.test
mydomain = test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = no
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{sink_port}
transport_maps = inline:{{ defer.test=smtp:[127.0.0.1]:{defer_port} }}
enable_long_queue_ids = {long_ids}
queue_run_delay = 1s
minimal_backoff_time = 2s
maximal_backoff_time = 4s
smtpd_recipient_restrictions = check_recipient_access inline:{{ reject.test=REJECT }},
    permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
smtpd_sasl_local_domain =
header_checks = regexp:{root}/etc/header_checks
{eod}
"""
EOD = "smtpd_end_of_data_restrictions = check_client_access static:{INFO end-of-data}"
HEADER_CHECKS = ("/^X-Mailsla-Class:/ INFO\n/^X-Mailsla-Priority:/ INFO\n"
                 "/^X-Test-Reject:/ REJECT rejected by the lab's header_checks\n")  # a reject after DATA, for tests
SMTPD_CONF = "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: {sasldb}\n"


def missing() -> str | None:
    """None when a private Postfix can run here, else the one-line reason naming the package."""
    for tool, package in (("postfix", "postfix"), ("smtp-sink", "postfix"), ("smtp-source", "postfix"),
                          ("saslpasswd2", "sasl2-bin")):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"needs the Debian package {package} ({tool} not found; `make install-mta` installs it, as root)"
    if not Path("/usr/lib/x86_64-linux-gnu/sasl2/libplain.so").exists() and not list(
            Path("/usr/lib").glob("*/sasl2/libplain.so*")):
        return "needs the Debian package libsasl2-modules (SASL PLAIN; `make install-mta`)"
    if os.geteuid() != 0:
        return "needs root (a private Postfix instance runs as root)"
    return None


class PostfixLab:
    """One private instance; `start`, send mail, `pause_qmgr`/`resume_qmgr`, `logrotate`, `stop`."""

    def __init__(self, host: str = "mta1", accounts: dict[str, str] | None = None,
                 long_ids: bool = False, eod_marker: bool = True, syslog_file: Path | None = None) -> None:
        """`syslog_file`: log through syslog(3) to /dev/log instead of maillog_file; the syslog daemon
        writes that file (the fixtures' rsyslog capture)."""
        self.root, self.host = lab_dir(host), host
        self.syslog_file = syslog_file
        self.port, self.sink_port, self.defer_port = free_port(), free_port(), free_port()
        self.accounts = accounts or {}
        self.long_ids, self.eod_marker = long_ids, eod_marker
        self.etc = self.root / "etc"
        self.log = syslog_file or self.root / "log" / "maillog"
        self.sinks: list[subprocess.Popen] = []

    def _write_config(self) -> None:
        for d in ("etc/sasl", "sasl", "spool", "data", "log"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root / "data", "postfix")
        (self.etc / "master.cf").write_text(MASTER_CF.format(port=self.port))
        (self.etc / "main.cf").write_text(MAIN_CF.format(
            root=self.root, host=self.host, sink_port=self.sink_port, defer_port=self.defer_port,
            long_ids="yes" if self.long_ids else "no", eod=EOD if self.eod_marker else "",
            maillog="" if self.syslog_file else f"maillog_file = {self.root}/log/maillog\n"
                                                 f"maillog_file_prefixes = {self.root}/log"))
        (self.etc / "header_checks").write_text(HEADER_CHECKS)
        sasldb = self.root / "sasl" / "sasldb2"  # owned by postfix: not in the config directory (postfix check)
        # Debian's Postfix reads $config_directory/sasl/smtpd.conf (cyrus_sasl_config_path is not used)
        (self.etc / "sasl" / "smtpd.conf").write_text(SMTPD_CONF.format(sasldb=sasldb))
        for user, password in self.accounts.items():
            name, _, realm = user.partition("@")
            subprocess.run(["saslpasswd2", "-f", str(sasldb), "-p", "-c", *(["-u", realm] if realm else []), name],
                           input=password.encode(), check=True, capture_output=True)
        if sasldb.exists():
            shutil.chown(sasldb, "postfix")

    def postfix(self, *args: str, check: bool = True) -> str:
        """`postfix -c ETC ARGS` with a terminal on stderr, so errors are printed, not only syslogged."""
        code, out = run_on_tty(["postfix", "-c", str(self.etc), *args])
        if check and code != 0:
            raise RuntimeError(f"postfix {' '.join(args)} exited {code}: {out.strip()[-2000:]}")
        return out

    def start(self) -> "PostfixLab":
        self._write_config()
        self.sinks = [smtp_sink(self.sink_port), smtp_sink(self.defer_port, soft_reject="RCPT")]
        self.postfix("start")
        if not wait_port(self.port, 30):
            raise RuntimeError(f"postfix did not listen on 127.0.0.1:{self.port}: {self.log_tail()}")
        return self

    def stop(self) -> None:
        self.resume_qmgr()
        self.postfix("stop", check=False)
        stop_all(self.sinks)
        self.sinks = []

    def remove(self) -> None:
        """Stop, and delete the instance's directory (queue, logs, config)."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def master_pid(self) -> int:
        return int((self.root / "spool" / "pid" / "master.pid").read_text().split()[0])

    def qmgr_pids(self) -> list[int]:
        return pids_of_children(self.master_pid(), "qmgr")

    def pause_qmgr(self) -> list[int]:
        """SIGSTOP the queue manager: mail is still accepted, none becomes ready."""
        pids = self.qmgr_pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    def resume_qmgr(self) -> None:
        try:
            for pid in self.qmgr_pids():
                os.kill(pid, signal.SIGCONT)
        except (OSError, ValueError):
            pass

    def logrotate(self) -> None:
        """`postfix logrotate`: maillog renamed with a time suffix and gzipped, a new one started."""
        self.postfix("logrotate")

    def postsuper(self, *args: str) -> str:
        return subprocess.run(["postsuper", "-c", str(self.etc), *args], capture_output=True, text=True,
                              check=True).stderr

    def queue_ids(self) -> list[str]:
        out = subprocess.run(["postqueue", "-c", str(self.etc), "-j"], capture_output=True, text=True).stdout
        return [json.loads(line)["queue_id"] for line in out.splitlines() if line.strip()]

    def smtp_source(self, messages: int, sessions: int = 4, sender: str = "load@bulk.test",
                    to: str = "rcpt@dest.test", extra: tuple[str, ...] = ()) -> None:
        """Postfix's own load generator: `messages` small messages over `sessions` parallel sessions."""
        subprocess.run(["smtp-source", "-m", str(messages), "-s", str(sessions),
                        "-f", sender, "-t", to, *extra, f"127.0.0.1:{self.port}"],
                       check=True, capture_output=True, timeout=600)

    def log_tail(self, n: int = 40) -> str:
        return tail(self.log, n)

    def __enter__(self) -> "PostfixLab":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

