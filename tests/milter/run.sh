#!/bin/sh
# run.sh TEST.lua - one miltertest script against the real m365-milter.
#
# Writes tests/milter/milter.conf.in into a scratch directory with a free
# loopback port, runs miltertest (which starts and stops the milter with
# -f), then checks every "-- expect-log: TEXT" line of the script against
# what the milter logged, and every "-- reject-log: TEXT" is absent.
set -u
script=$1
: "${top_srcdir:=.}" "${top_builddir:=.}"
milter=$(cd "$top_builddir" && pwd)/milter/m365-milter
top_srcdir=$(cd "$top_srcdir" && pwd)
command -v miltertest >/dev/null || { echo "miltertest not installed (apt-get install miltertest)"; exit 99; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
. "$top_srcdir/tests/lib/common.sh"
port=$(free_port)
on_error=$(sed -n 's/^-- on_error: //p' "$script")
sed -e "s|@PORT@|$port|" -e "s|@DIR@|$tmp|" -e "s|@ON_ERROR@|${on_error:-tempfail}|" \
	"$top_srcdir/tests/milter/milter.conf.in" > "$tmp/m365relay.conf"
echo s > "$tmp/app.secret"; chmod 600 "$tmp/app.secret"
echo c > "$tmp/relay.crt"; echo k > "$tmp/relay.key"; chmod 600 "$tmp/relay.key"
# The route key (route.key next to the configuration); 07-route-header.lua
# knows the signatures it makes.
echo milter-test-route-key-0123456789abcdef0123456789 > "$tmp/route.key"
chmod 600 "$tmp/route.key"
chown nobody "$tmp/route.key" # the milter's user = in milter.conf.in

miltertest -D milter="$milter" -D conf="$tmp/m365relay.conf" -D port="$port" \
	-D dir="$tmp" -D common="$top_srcdir/tests/milter/common.lua" \
	-s "$script" > "$tmp/out" 2> "$tmp/log"
rc=$?
cat "$tmp/out"
echo "--- milter log"
cat "$tmp/log"
echo "---"
[ "$rc" -eq 0 ] || { echo "FAIL: miltertest exited $rc"; exit 1; }
status=0
grep '^-- expect-log: ' "$script" | sed 's/^-- expect-log: //' > "$tmp/want"
while IFS= read -r want; do
	if grep -qF -- "$want" "$tmp/log"; then echo "ok: log has: $want"; else echo "FAIL: log lacks: $want"; status=1; fi
done < "$tmp/want"
grep '^-- reject-log: ' "$script" | sed 's/^-- reject-log: //' > "$tmp/unwanted"
while IFS= read -r bad; do
	if grep -qF -- "$bad" "$tmp/log"; then echo "FAIL: log has: $bad"; status=1; else echo "ok: log lacks: $bad"; fi
done < "$tmp/unwanted"
exit $status
