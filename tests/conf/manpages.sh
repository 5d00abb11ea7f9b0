#!/bin/sh
# manpages.sh - every man page as installed: no placeholder left, the
# configuration path this build was configured with (the one m365ctl
# reads by default), the sections an administrator looks for (FILES, SEE
# ALSO, and EXIT STATUS for the programs), and no groff warning.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
command -v groff >/dev/null || { echo "FAIL: groff missing: apt-get install groff-base"; exit 1; }
conf_file=$("$top_builddir/cli/m365ctl" -h | sed -n 's/^-c FILE *configuration (default \(.*\))$/\1/p')
[ -n "$conf_file" ] || { echo "FAIL: m365ctl -h names no default configuration"; exit 1; }

for page in m365relay.conf.5 m365ctl.8 m365-milter.8 m365-transport.8; do
	f=$top_builddir/conf/$page
	[ -f "$f" ] || f=$top_srcdir/conf/$page
	[ -f "$f" ] || { fail "$page: not built"; continue; }
	if grep -n '@[A-Za-z_]*@' "$f"; then fail "$page: a placeholder is left"; fi
	grep -q "$conf_file" "$f" || fail "$page: does not name $conf_file"
	if grep -q '/usr/local\|/etc/m365relay' "$f" && ! grep -q "$(dirname "$conf_file")" "$f"; then
		fail "$page: names a path configure was not given"
	fi
	sections="FILES:SEE ALSO"
	case $page in *.8) sections="$sections:EXIT STATUS" ;; esac
	old_ifs=$IFS
	IFS=:
	for sec in $sections; do
		grep -q "^\.SH $sec\$" "$f" || fail "$page: no $sec section"
	done
	IFS=$old_ifs
	w=$(groff -man -ww -z -t "$f" 2>&1)
	[ -z "$w" ] || fail "$page: groff: $w"
	echo "ok: $page"
done

# m365-milter(8) lists every reason token the log and the metrics use: the
# X-macro in lib/policy/policy.h is the one list.
page=$top_builddir/conf/m365-milter.8
[ -f "$page" ] || page=$top_srcdir/conf/m365-milter.8
reasons=$(sed -n 's/^[[:space:]]*X(REASON_[A-Z_]*, "\([a-z-]*\)").*/\1/p' "$top_srcdir/lib/policy/policy.h")
[ "$(echo "$reasons" | wc -w)" -ge 20 ] || fail "policy.h: only $(echo "$reasons" | wc -w) reasons read"
for r in $reasons; do
	grep -q "^\.BR $r [,.]\$" "$page" || fail "m365-milter.8 does not list the reason $r"
done
echo "ok: m365-milter.8 lists the $(echo "$reasons" | wc -w) reasons"
[ "$failures" -eq 0 ]
