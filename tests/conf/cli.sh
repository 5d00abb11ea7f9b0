#!/bin/sh
# cli.sh - every program answers -V with its version and -h with its usage
# (exit 0), and every m365ctl command answers --help, without reading any
# configuration.
set -u
: "${top_builddir:=.}"
failures=0
check() { # check WHAT OUTPUT-PATTERN COMMAND...
	what=$1
	pat=$2
	shift 2
	if out=$("$@" 2>&1) && printf '%s\n' "$out" | grep -q -- "$pat"; then
		echo "ok: $what"
	else
		echo "FAIL: $what: $out"
		failures=$((failures + 1))
	fi
}
version=$(sed -n 's/^PACKAGE_VERSION = //p' "$top_builddir/Makefile")
for p in milter/m365-milter transport/m365-transport cli/m365ctl; do
	name=$(basename "$p")
	check "$name -V" "^$name (m365relay) $version\$" "$top_builddir/$p" -V
	check "$name -h" "^usage: " "$top_builddir/$p" -h
done
for c in check-config explain doctor status route-key token; do
	check "m365ctl $c --help" "^usage: m365ctl \[-c FILE\] $c" \
		"$top_builddir/cli/m365ctl" -c /nonexistent/m365relay.conf "$c" --help
done
echo "$failures failure(s)"
[ "$failures" -eq 0 ]
