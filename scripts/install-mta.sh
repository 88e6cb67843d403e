#!/usr/bin/env bash
# Real mail servers for the `mailsla ingest` tests (issue #19), on Debian, as root (CI runs as root):
#  * Postfix 3.7 with apt (postfix/main_mailer_type preseeded "No configuration": nothing of the system's
#    own mail setup is configured or started), sasl2-bin (saslpasswd2) and libsasl2-modules (PLAIN);
#  * Exim 4.96: exim4-daemon-light conflicts with postfix (both are mail-transport-agent), so its
#    packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x` into /opt/mailsla/exim4
#    (outside /root: its daemons re-exec the binary after dropping to Debian-exim); its library
#    dependencies are installed with apt, and the system user Debian-exim its binary looks up is created.
# Does nothing that is already done. Without root or apt it says so and exits 0: the tests then skip
# with the missing package named (in CI, CI=true, they fail instead).
set -euo pipefail
EXIM_DIR=/opt/mailsla/exim4
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-mta: needs root and apt-get; the Postfix and Exim tests will be skipped (CI=true: they fail)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt_install() {  # install, updating the package lists once if they are stale
  apt-get install -y -qq --no-install-recommends --no-upgrade "$@" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends --no-upgrade "$@" >/dev/null; }
}
need=()
command -v postfix >/dev/null || need+=(postfix)
command -v saslpasswd2 >/dev/null || need+=(sasl2-bin)
ls /usr/lib/*/sasl2/libplain.so >/dev/null 2>&1 || need+=(libsasl2-modules)
ls /usr/lib/*/sasl2/libsasldb.so >/dev/null 2>&1 || need+=(libsasl2-modules-db)
if [ ${#need[@]} -gt 0 ]; then
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  echo "install-mta: apt-get install ${need[*]}"
  apt_install "${need[@]}"
fi
if [ ! -x "$EXIM_DIR/usr/sbin/exim4" ]; then
  tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT && chmod 755 "$tmp"
  echo "install-mta: apt-get download exim4-daemon-light exim4-base exim4-config -> $EXIM_DIR"
  (cd "$tmp" && { apt-get download exim4-daemon-light exim4-base exim4-config >/dev/null 2>&1 ||
     { apt-get update -qq && apt-get download exim4-daemon-light exim4-base exim4-config >/dev/null; }; })
  deps=$(dpkg-deb -f "$tmp"/exim4-daemon-light_*.deb Depends | tr ',' '\n' | sed 's/[(|].*//; s/ //g' |
         grep -v -e '^exim4' -e '^debconf' -e '^$')
  # shellcheck disable=SC2086
  apt_install $deps
  mkdir -p "$EXIM_DIR"
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$EXIM_DIR"; done
fi
if ! getent passwd Debian-exim >/dev/null; then
  useradd --system --user-group --no-create-home --home-dir /var/spool/exim4 --shell /usr/sbin/nologin Debian-exim
fi
"$EXIM_DIR/usr/sbin/exim4" -bV 2>/dev/null | head -1 | sed 's/^/install-mta: /' || true
postconf -d mail_version 2>/dev/null | sed 's/^/install-mta: postfix /' || true
