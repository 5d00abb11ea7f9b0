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
# and tests/lib/common.sh's free_port and wait_until.
#
# Everything lives under DIR (config, queue, data, log); the system's own
# Postfix is never touched.  The work directory must be reachable by the
# postfix user, so DIR's parents must not be 0700 (mktemp -d is: chmod it).
# main.cf and master.cf come from tests/lib (the end-to-end gateway's too).
PF_LIB=${top_srcdir:-.}/tests/lib
. "$PF_LIB/common.sh"

pf_init() {
	PF_DIR=$1
	PF_PORT=$2
	mkdir -p "$PF_DIR/etc" "$PF_DIR/queue" "$PF_DIR/data"
	chown postfix "$PF_DIR/data"
	# The sandbox's main.cf and master.cf (shared with tests/e2e/gateway.py),
	# then what these tests add: retries within seconds, bounces not retried.
	sed -e "s|@DIR@|$PF_DIR|g" -e "s|@HOSTNAME@|relay.test|g" "$PF_LIB/main.cf" > "$PF_DIR/etc/main.cf"
	cat >> "$PF_DIR/etc/main.cf" <<MAIN
mydomain = relay.test
disable_dns_lookups = yes
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
bounce_queue_lifetime = 0
MAIN
	sed -e "s|@PORT@|$PF_PORT|g" "$PF_LIB/master.cf" > "$PF_DIR/etc/master.cf"
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
