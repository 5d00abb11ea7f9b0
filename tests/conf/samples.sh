#!/bin/sh
# samples.sh - the annotated samples in conf/ are accepted as shipped by
# m365ctl check-config and by the -n mode of both daemons.  The files the
# samples name (relative to the configuration directory) are created with
# the modes an administrator must give them.
set -eu
. "${top_srcdir:-.}/tests/conf/sample-sandbox.sh"

out=$("$top_builddir/cli/m365ctl" -c "$tmp/m365relay.conf" check-config 2>&1) ||
	fail "check-config refused the samples: $out"
echo "$out"
# The samples use every kind of section and option: their snapshot
# (conf_snap.c) is written, so none of them leaves a pointer out of it.
[ "$out" = "configuration OK
compiled: $tmp/m365relay.conf.snap (pipe(8) deliveries map it while the files it was made from are unchanged)" ] ||
	fail "unexpected output: $out"
[ -s "$tmp/m365relay.conf.snap" ] || fail "no snapshot written"

out=$("$top_builddir/milter/m365-milter" -n -c "$tmp/m365relay.conf" 2>&1) ||
	fail "m365-milter -n refused the samples: $out"
out=$("$top_builddir/transport/m365-transport" -n -c "$tmp/m365relay.conf" 2>&1) ||
	fail "m365-transport -n refused the samples: $out"

# The same samples with the secret opened up must be refused, naming it.
chmod 644 "$tmp/secrets/relay-app.secret"
if out=$("$top_builddir/cli/m365ctl" -c "$tmp/m365relay.conf" check-config 2>&1); then
	fail "check-config accepted a world-readable secret"
fi
line=$(grep -n '^[[:space:]]*client_secret_file = ' "$tmp/m365relay.conf" | cut -d: -f1)
case $out in
*"m365relay.conf:$line: error: client_secret_file: $tmp/secrets/relay-app.secret: mode 0644"*) ;;
*) fail "unexpected message: $out" ;;
esac
echo "ok: samples accepted; an opened-up secret refused with file:line"
