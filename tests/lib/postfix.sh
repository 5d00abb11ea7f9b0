# postfix.sh - sourced by tests: a private Postfix instance on loopback.
#
#   pf_init DIR SMTP_PORT          write main.cf/master.cf under DIR
#   pf_set "name = value" ...      add main.cf settings (postconf -c)
#   pf_start / pf_stop             start and stop this instance only
#   pf_wait_queue_empty SECONDS    until the queue is empty (0) or not (1)
#   pf_log                         the instance's log file
#
#   pf_sasl USER PASSWORD          SASL authentication against a sasldb
#
# Everything lives under DIR (config, queue, data, log); the system's own
# Postfix is never touched.  The work directory must be reachable by the
# postfix user, so DIR's parents must not be 0700 (mktemp -d is: chmod it).
pf_init() {
	PF_DIR=$1
	PF_PORT=$2
	mkdir -p "$PF_DIR/etc" "$PF_DIR/queue" "$PF_DIR/data"
	chown postfix "$PF_DIR/data"
	cat > "$PF_DIR/etc/main.cf" <<MAIN
compatibility_level = 3.6
config_directory = $PF_DIR/etc
queue_directory = $PF_DIR/queue
data_directory = $PF_DIR/data
maillog_file = $PF_DIR/maillog
maillog_file_prefixes = $PF_DIR
myhostname = relay.test
mydomain = relay.test
myorigin = relay.test
mydestination =
local_transport = error:no local delivery in tests
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8, 192.168.0.0/16, 10.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtp_dns_support_level = disabled
disable_dns_lookups = yes
smtpd_peername_lookup = no
biff = no
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
delay_warning_time = 0
bounce_queue_lifetime = 0
MAIN
	cat > "$PF_DIR/etc/master.cf" <<MASTER
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
MASTER
}

# pf_sasl USER PASSWORD - Cyrus SASL (sasldb) for this instance; Debian's
# Postfix reads $config_directory/sasl/smtpd.conf.
pf_sasl() {
	mkdir -p "$PF_DIR/etc/sasl"
	cat > "$PF_DIR/etc/sasl/smtpd.conf" <<SASL
pwcheck_method: auxprop
auxprop_plugin: sasldb
mech_list: PLAIN LOGIN
sasldb_path: $PF_DIR/etc/sasl/sasldb2
SASL
	echo "$2" | saslpasswd2 -f "$PF_DIR/etc/sasl/sasldb2" -c -p -u relay.test "$1"
	chown postfix "$PF_DIR/etc/sasl/sasldb2"
	pf_set "smtpd_sasl_auth_enable = yes" "smtpd_sasl_security_options = noanonymous"
}

pf_set() {
	for kv in "$@"; do
		postconf -c "$PF_DIR/etc" -e "$kv"
	done
}

pf_start() {
	postfix -c "$PF_DIR/etc" check >/dev/null 2>&1 || postfix -c "$PF_DIR/etc" check
	# postfix logs a fatal start error to syslog or a tty only: give it a tty.
	if ! postfix -c "$PF_DIR/etc" start >/dev/null 2>&1; then
		script -qc "postfix -c $PF_DIR/etc start" /dev/null
		return 1
	fi
	# Wait for the listener.
	i=0
	while ! (exec 3<>"/dev/tcp/127.0.0.1/$PF_PORT") 2>/dev/null; do
		i=$((i + 1))
		[ $i -gt 100 ] && { echo "postfix did not listen on $PF_PORT"; return 1; }
		sleep 0.1
	done
}

pf_stop() {
	[ -n "${PF_DIR:-}" ] && postfix -c "$PF_DIR/etc" stop >/dev/null 2>&1 || true
}

pf_flush() {
	postqueue -c "$PF_DIR/etc" -f >/dev/null 2>&1 || true
}

pf_queue() {
	postqueue -c "$PF_DIR/etc" -p 2>/dev/null
}

pf_wait_queue_empty() {
	i=0
	while [ $i -lt $(($1 * 10)) ]; do
		case $(pf_queue) in *"Mail queue is empty"*) return 0 ;; esac
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

pf_log() {
	echo "$PF_DIR/maillog"
}

# free_port - an unused TCP port on loopback
free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
