#!/bin/sh
# mkcerts.sh DIR - a test CA and the certificates the tests need, made fresh
# at test time (never committed):
#   ca.pem/ca.key            the test CA (the transport's ca_file in tests)
#   server.pem/server.key    localhost, 127.0.0.1 (the simulator's endpoints)
#   relay.pem/relay.key      CN=relay.contoso.com (certificate connector)
#   wild.pem/wild.key        CN=gw.example.net, SAN *.contoso.com, mail.fabrikam.com
#   other.pem/other.key      CN=relay.example.org (matches no connector)
#   app.pem/app.key          an app's client-assertion certificate
#   app2.pem/app2.key        a second one, not registered (wrong key)
#   expired.pem/expired.key  CN=relay.contoso.com, expired
#   san.pem/san.key          no CN, SAN relay.fabrikam.com only
#   soon.pem/soon.key        CN=soon.contoso.com, 20 days left
#   inter.pem/inter.key      an intermediate CA under ca.pem
#   chained.pem              CN=chained.contoso.com issued by inter (leaf only)
#   chained-full.pem         the same leaf followed by inter.pem
set -eu
d=$1
mkdir -p "$d"
cd "$d"
umask 077
cnf=$(mktemp)
trap 'rm -f "$cnf"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
	-subj "/O=m365relay tests/CN=m365relay test CA" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

# leaf NAME DAYS SUBJECT SAN [EXTRA]
leaf() {
	printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' > "$cnf"
	[ -n "$4" ] && printf 'subjectAltName=%s\n' "$4" >> "$cnf"
	openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$3" 2>/dev/null
	openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
		-out "$1.pem" -days "$2" -extfile "$cnf" 2>/dev/null
	rm -f "$1.csr"
}
leaf server 30 "/CN=localhost" \
	"DNS:localhost,IP:127.0.0.1,DNS:smtp.office365.com,DNS:*.mail.protection.outlook.com,DNS:smtp-hve.office365.com,DNS:graph.microsoft.com,DNS:login.microsoftonline.com"
leaf relay 30 "/O=Contoso/CN=relay.contoso.com" "DNS:relay.contoso.com"
leaf wild 30 "/CN=gw.example.net" "DNS:*.contoso.com,DNS:mail.fabrikam.com"
leaf other 30 "/CN=relay.example.org" "DNS:relay.example.org"
leaf app 30 "/CN=relay-app" ""
leaf app2 30 "/CN=impostor" ""
# An expired certificate: valid from 3 days ago to 1 day ago (OpenSSL 3.4+),
# else (Debian 12's 3.0) issued now with notAfter a day back: expired at once,
# even to a test that runs within the same second.
printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:relay.contoso.com\n' > "$cnf"
openssl req -newkey rsa:2048 -nodes -keyout expired.key -out expired.csr -subj "/CN=relay.contoso.com" 2>/dev/null
openssl x509 -req -in expired.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out expired.pem \
	-extfile "$cnf" -not_before "$(date -u -d '-3 days' +%Y%m%d%H%M%SZ)" \
	-not_after "$(date -u -d '-1 day' +%Y%m%d%H%M%SZ)" 2>/dev/null ||
	openssl x509 -req -in expired.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out expired.pem \
		-extfile "$cnf" -days -1 2>/dev/null
rm -f expired.csr
leaf san 30 "/O=Fabrikam" "DNS:relay.fabrikam.com"
leaf soon 20 "/CN=soon.contoso.com" "DNS:soon.contoso.com"
# An intermediate CA, and a leaf it issued (chained.pem alone lacks it).
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' > "$cnf"
openssl req -newkey rsa:2048 -nodes -keyout inter.key -out inter.csr \
	-subj "/O=m365relay tests/CN=m365relay test intermediate" 2>/dev/null
openssl x509 -req -in inter.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out inter.pem \
	-days 30 -extfile "$cnf" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:chained.contoso.com\n' > "$cnf"
openssl req -newkey rsa:2048 -nodes -keyout chained.key -out chained.csr \
	-subj "/CN=chained.contoso.com" 2>/dev/null
openssl x509 -req -in chained.csr -CA inter.pem -CAkey inter.key -CAcreateserial \
	-out chained.pem -days 30 -extfile "$cnf" 2>/dev/null
cat chained.pem inter.pem > chained-full.pem
rm -f inter.csr chained.csr ca.srl inter.srl
chmod 644 ./*.pem
