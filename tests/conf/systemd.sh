#!/bin/sh
# systemd.sh - the shipped unit passes systemd-analyze verify, is ordered
# before both Postfix units, logs as facility mail, and its hardening keeps
# systemd-analyze security's exposure at or under 2.0 ("OK"); the tmpfiles
# and sysusers files parse.  The unit is made from the .in the way
# Makefile.am makes it, pointing at the programs just built.
set -eu
: "${top_srcdir:=.}" "${top_builddir:=.}"
fail() { echo "FAIL: $*"; exit 1; }
command -v systemd-analyze >/dev/null || fail "systemd-analyze missing: apt-get install systemd"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ln -s "$(cd "$top_builddir" && pwd)/milter/m365-milter" "$(cd "$top_builddir" && pwd)/cli/m365ctl" "$tmp/"
unit=$tmp/m365-milter.service
sed -e "s|@sbindir[@]|$tmp|g" "$top_srcdir/contrib/systemd/m365-milter.service.in" > "$unit"

systemd-analyze verify --man=no "$unit" > "$tmp/verify" 2>&1 || fail "verify: $(cat "$tmp/verify")"
[ ! -s "$tmp/verify" ] || fail "verify said: $(cat "$tmp/verify")"
echo "ok: systemd-analyze verify"
grep -qx "Before=postfix.service postfix@-.service sendmail.service" "$unit" || fail "ordering"
grep -qx "SyslogFacility=mail" "$unit" || fail "no SyslogFacility=mail"
grep -qx "User=m365relay" "$unit" || fail "not the service user"
grep -q "^ReadWritePaths=.*/var/spool/postfix/m365relay" "$unit" || fail "the socket directory is not writable"

score=$(systemd-analyze security --offline=true "$unit" 2>&1 | sed -n 's/.*Overall exposure level for m365-milter.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "no exposure level"
# --threshold counts in tenths: 20 is an exposure of 2.0.
systemd-analyze security --offline=true --threshold=20 "$unit" >/dev/null 2>&1 ||
	fail "exposure $score is over 2.0"
echo "ok: systemd-analyze security: exposure $score"

# The handoff daemon's unit (m365-transport -D): verified, the service
# user, SIGTERM to the daemon alone (it waits for its deliveries), the
# socket m365-handoff looks for by default.
mkdir -p "$tmp/libexec"
ln -s "$(cd "$top_builddir" && pwd)/transport/m365-transport" "$tmp/libexec/"
tunit=$tmp/m365-transport.service
sed -e "s|@pkglibexecdir[@]|$tmp/libexec|g" "$top_srcdir/contrib/systemd/m365-transport.service.in" > "$tunit"
systemd-analyze verify --man=no "$tunit" > "$tmp/verify" 2>&1 || fail "verify m365-transport: $(cat "$tmp/verify")"
[ ! -s "$tmp/verify" ] || fail "verify m365-transport said: $(cat "$tmp/verify")"
grep -qx "User=m365relay" "$tunit" || fail "m365-transport: not the service user"
grep -qx "KillMode=mixed" "$tunit" || fail "m365-transport: KillMode is not mixed"
grep -qx "SyslogFacility=mail" "$tunit" || fail "m365-transport: no SyslogFacility=mail"
sock=$(sed -n 's/^ExecStart=.* -D \(.*\)$/\1/p' "$tunit")
grep -qaF "$sock" "$top_builddir/transport/m365-handoff" ||
	fail "m365-handoff's default socket is not the unit's $sock"
echo "ok: m365-transport.service verified; the daemon listens where m365-handoff looks ($sock)"

# tmpfiles: the three directories, the service user's, made in a scratch
# root whose passwd knows m365relay (as sysusers would have made it).
r=$tmp/root
mkdir -p "$r/etc" "$r/run"
echo "m365relay:x:990:990::/var/lib/m365relay:/usr/sbin/nologin" > "$r/etc/passwd"
echo "m365relay:x:990:" > "$r/etc/group"
systemd-tmpfiles --root="$r" --create "$(cd "$top_srcdir" && pwd)/contrib/systemd/m365relay.tmpfiles" ||
	fail "systemd-tmpfiles --create"
for d in /var/spool/postfix/m365relay /run/m365relay /var/lib/m365relay; do
	[ "$(stat -c '%a %u %g' "$r$d" 2>&1)" = "750 990 990" ] || fail "tmpfiles $d: $(stat -c '%a %u %g' "$r$d" 2>&1)"
done
echo "ok: tmpfiles makes the three directories, 0750, the service user's"
