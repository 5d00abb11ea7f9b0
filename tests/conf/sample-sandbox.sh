# sample-sandbox.sh - sourced by the shell tests: copy the shipped samples
# into a scratch directory ($tmp, removed on exit) with the files they name,
# at the modes an administrator must give them.  Sets $tmp and $ctl.
: "${top_srcdir:=.}" "${top_builddir:=.}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$top_srcdir/conf/m365relay.conf" "$top_srcdir/conf/domains.conf" "$tmp/"
# The machine around it, as an administrator sets it up (the service user
# owns state_dir and the secrets): "nobody" stands in for m365relay.
chmod 755 "$tmp"
sed -i -e 's|^user = .*|user = "nobody"|' -e "s|^state_dir = .*|state_dir = \"$tmp/state\"|" \
	"$tmp/m365relay.conf"
mkdir -p "$tmp/secrets" "$tmp/certs" "$tmp/state"
echo "secret-value" > "$tmp/secrets/relay-app.secret"
echo "certificate" > "$tmp/certs/relay.contoso.com.pem"
echo "key" > "$tmp/certs/relay.contoso.com.key"
chmod 600 "$tmp/secrets/relay-app.secret" "$tmp/certs/relay.contoso.com.key"
chown nobody "$tmp/state" "$tmp/secrets/relay-app.secret" "$tmp/certs/relay.contoso.com.key"
ctl=$top_builddir/cli/m365ctl
# The key that signs the route header, made as the README says.
"$ctl" -c "$tmp/m365relay.conf" route-key >/dev/null 2>&1 ||
	{ echo "FAIL: m365ctl route-key"; exit 1; }

fail() { echo "FAIL: $*"; exit 1; }
