#!/bin/sh
# check-bad.sh BAD.conf - one broken configuration, one test.
#
# The file's "# expect:" lines give substrings that m365ctl check-config must
# print (LINE is replaced by the file name, so "LINE:12: error: ..." checks
# that the message names file and line); "# file: NAME MODE [TEXT]" lines
# create files beside it (secrets, certificates) before the check.  The
# check must fail with exit status 1.
set -u
conf=$1
: "${top_builddir:=.}"
m365ctl=$top_builddir/cli/m365ctl

tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT
name=$(basename "$conf")
cp "$conf" "$tmp/$name"
grep '^# file: ' "$conf" | while read -r _ _ file mode text; do
	mkdir -p "$(dirname "$tmp/$file")"
	printf '%s\n' "${text:-x}" > "$tmp/$file"
	chmod "$mode" "$tmp/$file"
done

out=$("$m365ctl" -c "$tmp/$name" check-config 2>&1)
rc=$?
printf '%s\n' "$out"
if [ "$rc" -ne 1 ]; then
	echo "FAIL: $name: check-config exited $rc, expected 1"
	exit 1
fi
status=0
grep '^# expect: ' "$conf" | sed 's/^# expect: //' > "$tmp/expect"
[ -s "$tmp/expect" ] || { echo "FAIL: $name has no '# expect:' line"; exit 1; }
while IFS= read -r want; do
	# TMP first: the scratch directory's random name may itself hold "TMP".
	want=$(printf "%s" "$want" | sed -e "s|TMP|$tmp|g" -e "s|^LINE|$tmp/$name|")
	case $out in
	*"$want"*) echo "ok: $want" ;;
	*) echo "FAIL: $name: missing: $want"; status=1 ;;
	esac
done < "$tmp/expect"
exit $status
