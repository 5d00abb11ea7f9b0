#!/bin/sh
# route-key.sh - m365ctl route-key makes the key file as the README says
# (0600, one key), leaves an existing one alone, and --rotate puts a new
# key first and keeps only the one that signed until then.
set -eu
. "${top_srcdir:-.}/tests/conf/sample-sandbox.sh"
key=$tmp/route.key
keys() { grep -v '^#' "$key"; }

# The sandbox ran route-key once already.
[ "$(stat -c %a "$key")" = 600 ] || fail "mode $(stat -c %a "$key")"
[ "$(keys | wc -l)" -eq 1 ] || fail "$(keys | wc -l) keys after create"
k1=$(keys)
[ "${#k1}" -eq 64 ] || fail "key of ${#k1} characters"
case $k1 in *[!0-9a-f]*) fail "not hex: $k1" ;; esac

out=$("$ctl" -c "$tmp/m365relay.conf" route-key)
case $out in *"holds 1 key(s)"*) echo "ok: an existing file is left alone" ;; *) fail "$out" ;; esac
[ "$(keys)" = "$k1" ] || fail "the key changed"

out=$("$ctl" -c "$tmp/m365relay.conf" route-key --rotate)
case $out in *"still verifies"*) echo "ok: $out" ;; *) fail "$out" ;; esac
[ "$(keys | wc -l)" -eq 2 ] || fail "$(keys | wc -l) keys after a rotation"
k2=$(keys | head -n1)
[ "$k2" != "$k1" ] && [ "$(keys | sed -n 2p)" = "$k1" ] || fail "rotation order: $(keys)"

"$ctl" -c "$tmp/m365relay.conf" route-key --rotate >/dev/null
[ "$(keys | wc -l)" -eq 2 ] && [ "$(keys | sed -n 2p)" = "$k2" ] ||
	fail "a second rotation keeps the previous key only: $(keys)"
[ "$(stat -c %a "$key")" = 600 ] || fail "mode after rotation $(stat -c %a "$key")"
"$ctl" -c "$tmp/m365relay.conf" check-config >/dev/null || fail "check-config after rotation"
echo "ok: created, kept, rotated twice"

# A package makes the key before the configuration is filled in: the
# secrets the sample names do not exist yet, and route-key still works.
rm -f "$key" "$tmp/secrets/relay-app.secret" "$tmp/certs/relay.contoso.com.key"
out=$("$ctl" -c "$tmp/m365relay.conf" route-key 2>&1) || fail "route-key without the secrets: $out"
case $out in *"created $key"*) echo "ok: made before the secrets exist" ;; *) fail "$out" ;; esac
[ "$(keys | wc -l)" -eq 1 ] || fail "$(keys | wc -l) keys"
