#!/bin/bash
# metrics.sh - m365-milter's /metrics page (milter/metrics.c, libmicrohttpd)
# and the monitoring files in contrib/:
#  - 32 messages through the milter (miltertest, tests/store/burst.lua):
#    the page then passes promtool check metrics, every family has HELP and
#    TYPE with all its samples together, and the verdict, mailbox and store
#    samples say what happened (30 accepted, 2 over the message limit);
#  - only GET /metrics and GET / answer: 405 (Allow: GET) for any other
#    method, 404 for any other path;
#  - the connection limit (16) and the idle timeout (10 s) are in force;
#  - the page survives a reload and a worker restart (a new worker binds
#    again), and a second milter that cannot bind the port logs the error
#    and keeps serving mail; an address that is not loopback is warned
#    about;
#  - contrib/prometheus/m365relay-alerts.yml passes promtool check rules and
#    its unit tests below, contrib/grafana/m365relay-dashboard.json parses,
#    its queries are PromQL, and both use only names the page exports.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
for tool in miltertest:miltertest curl:curl promtool:prometheus python3:python3; do
	command -v "${tool%%:*}" >/dev/null ||
		{ echo "FAIL: ${tool%%:*} not installed (apt-get install ${tool#*:})"; exit 1; }
done
. "$top_srcdir/tests/store/lib.sh"
alerts=$top_srcdir/contrib/prometheus/m365relay-alerts.yml
dashboard=$top_srcdir/contrib/grafana/m365relay-dashboard.json

mp=$(free_port); xp=$(free_port); mp2=$(free_port)
write_conf m "$mp" "$xp" 'store { path = "store.mdb" }'
trap 'stop_milter m; stop_milter b; rm -rf "$tmp"' EXIT
url=http://127.0.0.1:$xp

# status METHOD PATH - the HTTP status code curl got ("000": no answer)
status() {
	curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X "$1" "$url$2"
}
# wait_page - until the worker's listener answers (it starts after the fork)
wait_page() {
	for _ in $(seq 100); do
		[ "$(status GET /metrics)" = 200 ] && return 0
		sleep 0.05
	done
	return 1
}
# wait_log TEXT COUNT - until NAME.log has TEXT at least COUNT times
wait_log() {
	for _ in $(seq 200); do
		[ "$(grep -cF -- "$1" "$tmp/m.log")" -ge "$2" ] && return 0
		sleep 0.05
	done
	return 1
}
# accept_queue_empty PORT - the listening socket on 127.0.0.1:PORT has
# accepted every connection made to it (its rx_queue in /proc/net/tcp,
# for a listener the accept queue's length, is 0)
accept_queue_empty() {
	awk -v a="$(printf '0100007F:%04X' "$1")" \
		'$2 == a && $4 == "0A" { split($5, q, ":"); found = 1; if (q[2] != "00000000") busy = 1 }
		END { exit !(found && !busy) }' /proc/net/tcp
}
sample() { # sample NAME-AND-LABELS - its value on the page in $tmp/page
	awk -v k="$1" '$1 == k {print $2}' "$tmp/page"
}
expect() { # expect NAME-AND-LABELS VALUE
	local v
	v=$(sample "$1")
	[ "$v" = "$2" ] && ok "$1 = $2" || fail "$1: '$v', want $2"
}

start_milter m "$mp" || exit 1
wait_page && ok "page served on 127.0.0.1:$xp" || { fail "no page"; cat "$tmp/m.log"; exit 1; }
grep -qF "metrics on http://127.0.0.1:$xp/metrics" "$tmp/m.log" && ok "start logged" ||
	fail "no 'metrics on' line"
grep -q "not loopback" "$tmp/m.log" && fail "loopback address warned about" ||
	ok "no warning for a loopback address"

# 1. Messages through the milter, then the page.
r=$(burst "$mp" 32 M)
[ "$r" = "accepted=30 refused=2" ] && ok "32 messages: $r" || fail "burst: $r"
curl -s -D "$tmp/head" -o "$tmp/page" --max-time 5 "$url/metrics"
grep -qi '^HTTP/1.1 200' "$tmp/head" && ok "GET /metrics: 200" || fail "status: $(head -1 "$tmp/head")"
grep -qi '^Content-Type: text/plain; version=0.0.4; charset=utf-8' "$tmp/head" &&
	ok "Prometheus text content type" || fail "content type: $(grep -i content-type "$tmp/head")"
if out=$(promtool check metrics < "$tmp/page" 2>&1); then
	ok "promtool check metrics: clean"
else
	fail "promtool check metrics: $out"
fi
# The exposition format's grouping, checked here too: promtool's parser
# does not refuse samples that come back to a family after another one.
if out=$(/usr/bin/python3 - "$tmp/page" <<'PY'
import re, sys
seen, cur, help_of, errors = set(), None, None, []
for n, line in enumerate(open(sys.argv[1]), 1):
    line = line.rstrip("\n")
    m = re.match(r"# (HELP|TYPE) (\S+)(?: (.*))?$", line)
    if m:
        kind, name = m.group(1), m.group(2)
        if kind == "HELP":
            if name in seen:
                errors.append("%d: %s appears twice" % (n, name))
            seen.add(name); cur, help_of = None, name
            if not m.group(3):
                errors.append("%d: %s: empty HELP" % (n, name))
        elif name != help_of:
            errors.append("%d: TYPE %s without its HELP just before" % (n, name))
        else:
            cur = name
        continue
    name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
    if name != cur:
        errors.append("%d: %s outside its family (in %s)" % (n, name, cur))
if not seen:
    errors.append("no family at all")
print("\n".join(errors) if errors else "%d families" % len(seen))
sys.exit(1 if errors else 0)
PY
); then ok "HELP and TYPE for each family, samples grouped: $out"; else fail "grouping: $out"; fi
expect 'm365relay_verdicts_total{verdict="accept",reason="ok"}' 30
expect 'm365relay_verdicts_total{verdict="tempfail",reason="message-limit"}' 2
# Every reason of the policy (the X-macro in lib/policy/policy.h) has its
# own series under each verdict, at 0 until counted: none is lumped
# together, none appears only once it happens.
reasons=$(sed -n 's/^[[:space:]]*X(REASON_[A-Z_]*, "\([a-z-]*\)").*/\1/p' \
	"$top_srcdir/lib/policy/policy.h")
[ "$(echo "$reasons" | wc -w)" -ge 20 ] || fail "policy.h: only $(echo "$reasons" | wc -w) reasons read"
missing=""
for r in $reasons; do
	for v in accept reject tempfail none; do
		grep -q "^m365relay_verdicts_total{verdict=\"$v\",reason=\"$r\"} " "$tmp/page" ||
			missing="$missing $v/$r"
	done
done
[ -z "$missing" ] && ok "every reason has its series ($(echo "$reasons" | wc -w) reasons x 4 verdicts)" ||
	fail "reasons without a series:$missing"
expect 'm365relay_verdicts_total{verdict="reject",reason="send-as-denied"}' 0
expect 'm365relay_store_up' 1
expect 'm365relay_store_errors_total' 0
expect 'm365relay_mailbox_messages{mailbox="erp@contoso.com",stage="admitted"}' 30
expect 'm365relay_mailbox_messages{mailbox="erp@contoso.com",stage="sent"}' 0
expect 'm365relay_mailbox_messages_limit{mailbox="erp@contoso.com",window_seconds="60"}' 30
expect 'm365relay_mailbox_recipients{mailbox="erp@contoso.com",stage="admitted"}' 0
expect 'm365relay_mailbox_recipients_limit{mailbox="erp@contoso.com",window_seconds="86400"}' 10000
expect 'm365relay_mailbox_sessions_limit{mailbox="erp@contoso.com"}' 3
grep -q '^# TYPE m365relay_mailbox_next_message_seconds gauge$' "$tmp/page" &&
	ok "next_message_seconds typed gauge" || fail "no TYPE for next_message_seconds"
# The names the page exports (for the contrib/ checks below).
sed -n 's/^# TYPE \([^ ]*\) .*/\1/p' "$tmp/page" | sort -u > "$tmp/exported"
[ "$(wc -l < "$tmp/exported")" -eq 10 ] && ok "10 families exported" ||
	fail "families: $(tr '\n' ' ' < "$tmp/exported")"

# 2. Methods and paths.
[ "$(status GET /)" = 200 ] && ok "GET /: 200" || fail "GET /: $(status GET /)"
[ "$(status POST /metrics)" = 405 ] && ok "POST /metrics: 405" || fail "POST: $(status POST /metrics)"
[ "$(status PUT /metrics)" = 405 ] && ok "PUT /metrics: 405" || fail "PUT: $(status PUT /metrics)"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --data-binary 'x=1' "$url/metrics")
[ "$code" = 405 ] && ok "POST with a body: 405" || fail "POST with a body: $code"
curl -s -D - -o /dev/null --max-time 5 -X DELETE "$url/metrics" | grep -qi '^Allow: GET' &&
	ok "405 says Allow: GET" || fail "no Allow header"
[ "$(status GET /other)" = 404 ] && ok "GET /other: 404" || fail "GET /other: $(status GET /other)"
[ "$(status GET /metrics/x)" = 404 ] && ok "GET /metrics/x: 404" || fail "GET /metrics/x: $(status GET /metrics/x)"

# 3. At most 16 connections; an idle one is closed after 10 s.
for fd in $(seq 10 25); do eval "exec $fd<>/dev/tcp/127.0.0.1/$xp"; done
wait_until 10 "the page's listener to accept all 16 (its accept queue empty)" accept_queue_empty "$xp"
[ "$(status GET /metrics)" = 000 ] && ok "a 17th connection gets no answer" ||
	fail "17th connection answered: $(status GET /metrics)"
for fd in $(seq 10 25); do eval "exec $fd>&-"; done
wait_page && ok "answered again once they closed" || fail "no page after closing them"
exec 9<>"/dev/tcp/127.0.0.1/$xp"
SECONDS=0
timeout 30 cat <&9 >/dev/null
t=$SECONDS
exec 9>&-
[ "$t" -ge 8 ] && [ "$t" -le 14 ] && ok "an idle connection closed after ${t} s" ||
	fail "idle connection closed after ${t} s (want about 10)"

# 4. A reload keeps the listener; a restarted worker binds it again.
kill -HUP "$(cat "$tmp/m.pid")"
# (logged once: by the worker that loads it; the supervisor only checks it)
wait_log "reload: configuration" 1 || fail "no reload in the log"
[ "$(status GET /metrics)" = 200 ] && ok "page served after a reload" || fail "no page after a reload"
[ "$(grep -cF "metrics on http://127.0.0.1:$xp/metrics" "$tmp/m.log")" = 1 ] &&
	ok "the reload did not restart the listener" || fail "listener restarted by a reload"
kill -9 "$(pgrep -P "$(cat "$tmp/m.pid")")"
wait_log "metrics on http://127.0.0.1:$xp/metrics" 2 && wait_page &&
	ok "page served by the restarted worker" || { fail "no page after a worker restart"; tail "$tmp/m.log"; }
curl -s -o "$tmp/page" --max-time 5 "$url/metrics"
expect 'm365relay_verdicts_total{verdict="accept",reason="ok"}' 0
expect 'm365relay_mailbox_messages{mailbox="erp@contoso.com",stage="admitted"}' 30

# 5. A port already taken: logged as an error, the milter serves mail anyway.
write_conf b "$mp2" "$xp" 'store { path = "store.mdb" }'
start_milter b "$mp2" || fail "second milter did not start"
for _ in $(seq 100); do grep -q "metrics_listen" "$tmp/b.log" && break; sleep 0.05; done
grep -qF "metrics_listen 127.0.0.1:$xp: Address already in use" "$tmp/b.log" &&
	ok "bind failure logged" || fail "bind failure: $(cat "$tmp/b.log")"
# A message through it after the failure: its worker is alive and answers
# (the supervisor's socket alone would take the connection).
r=$(burst "$mp2" 1 P)
case $r in accepted=*) ok "that milter still serves mail after it ($r)" ;;
*) fail "the milter without its page: no verdict: '$r'"; cat "$tmp/b.log" ;; esac
(exec 3<>"/dev/tcp/127.0.0.1/$mp2") 2>/dev/null && ok "that milter still serves its socket" ||
	fail "the milter without its page went away"
[ "$(status GET /metrics)" = 200 ] && ok "the first milter's page unaffected" || fail "first page gone"
stop_milter b
# A non-loopback address is warned about (192.0.2.1, TEST-NET-1, is not
# ours: the bind fails after the warning, and nothing listens outside).
rm -f "$tmp/b.log"
sed -i "s|^\tmetrics_listen = .*|\tmetrics_listen = \"192.0.2.1:$xp\"|" "$tmp/b.conf"
grep -q "metrics_listen = \"192.0.2.1:$xp\"" "$tmp/b.conf" || fail "b.conf not edited"
start_milter b "$mp2" || fail "third milter did not start"
for _ in $(seq 100); do grep -q "Cannot assign" "$tmp/b.log" && break; sleep 0.05; done
grep -qF "metrics_listen 192.0.2.1:$xp: not loopback; the page names mailboxes and counts, protect it" \
	"$tmp/b.log" && ok "non-loopback address warned about" || fail "no warning: $(cat "$tmp/b.log")"
grep -qF "metrics_listen 192.0.2.1:$xp: Cannot assign requested address" "$tmp/b.log" &&
	ok "and its bind failure logged" || fail "bind failure: $(cat "$tmp/b.log")"
stop_milter b

# 6. contrib/: the alert rules and the dashboard.
if out=$(promtool check rules "$alerts" 2>&1); then ok "promtool check rules: $(echo "$out" | tail -n1)"
else fail "promtool check rules: $out"; fi
if /usr/bin/python3 -m json.tool "$dashboard" >/dev/null; then ok "dashboard JSON parses"
else fail "dashboard JSON does not parse"; fi
# names FILE - every m365relay_* name in FILE
names() { grep -o 'm365relay_[a-z_]*[a-z]' "$1" | sort -u; }
for f in "$alerts" "$dashboard"; do
	names "$f" > "$tmp/used"
	unknown=$(comm -23 "$tmp/used" "$tmp/exported" | tr '\n' ' ')
	[ -s "$tmp/used" ] && [ -z "$unknown" ] && ok "$(basename "$f"): $(wc -l < "$tmp/used") names, all exported" ||
		fail "$(basename "$f") names what the milter does not export: '$unknown'"
done
for want in m365relay_verdicts_total m365relay_store_up m365relay_store_errors_total \
	m365relay_mailbox_messages m365relay_mailbox_messages_limit; do
	names "$dashboard" | grep -qx "$want" && ok "dashboard shows $want" || fail "dashboard lacks $want"
done
if out=$(/usr/bin/python3 - "$dashboard" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
found = []
def walk(o):
    if isinstance(o, dict):
        if isinstance(o.get("datasource"), dict):
            found.append(o["datasource"])
        for v in o.values():
            walk(v)
    elif isinstance(o, list):
        for v in o:
            walk(v)
walk(d["panels"]); walk(d["templating"])
bad = [x for x in found if x != {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}]
assert d["__inputs"][0]["name"] == "DS_PROMETHEUS", "no DS_PROMETHEUS input"
print("%d datasource references" % len(found))
sys.exit(1 if bad or not found else 0)
PY
); then ok "dashboard: \${DS_PROMETHEUS} everywhere ($out)"; else fail "dashboard datasource: $out"; fi
# The dashboard's queries are PromQL: as recording rules (Grafana's
# variables replaced), promtool parses them.
/usr/bin/python3 - "$dashboard" > "$tmp/dash-rules.yml" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
exprs += [v["query"]["query"] for v in d["templating"]["list"] if v["type"] == "query"]
print("groups:\n  - name: dashboard\n    rules:")
for i, e in enumerate(exprs):
    e = e.replace("$__rate_interval", "5m").replace("$instance", ".*").replace("$mailbox", ".*")
    if e.startswith("label_values("):  # label_values(EXPR, LABEL)
        e = e[len("label_values("):e.rindex(",")]
    print("      - record: dashboard:q%d\n        expr: %s" % (i, json.dumps(e)))
PY
n=$(grep -c 'record:' "$tmp/dash-rules.yml")
if [ "$n" -ge 10 ] && out=$(promtool check rules "$tmp/dash-rules.yml" 2>&1); then
	ok "the dashboard's $n queries parse as PromQL"
else
	fail "dashboard queries ($n): $out"
fi
# The alerts fire on series shaped like the page's (labels as above).
cat > "$tmp/alerts-test.yml" <<TESTS
rule_files: ["$alerts"]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'm365relay_mailbox_messages{instance="gw",job="m",mailbox="erp@contoso.com",stage="sent"}'
        values: '28x20'
      - series: 'm365relay_mailbox_messages{instance="gw",job="m",mailbox="erp@contoso.com",stage="admitted"}'
        values: '0x20'
      - series: 'm365relay_mailbox_messages_limit{instance="gw",job="m",mailbox="erp@contoso.com",window_seconds="60"}'
        values: '30x20'
      - series: 'm365relay_mailbox_recipients{instance="gw",job="m",mailbox="erp@contoso.com",stage="sent"}'
        values: '0x40'
      - series: 'm365relay_mailbox_recipients_limit{instance="gw",job="m",mailbox="erp@contoso.com",window_seconds="86400"}'
        values: '10000x40'
      - series: 'm365relay_store_up{instance="gw",job="m"}'
        values: '1 1 0 0 0 0 0'
      - series: 'm365relay_store_errors_total{instance="gw",job="m"}'
        values: '0 0 1 2 3 4 5 6 7 8 9 10'
      - series: 'm365relay_verdicts_total{instance="gw",job="m",verdict="accept",reason="ok"}'
        values: '0+10x60'
      - series: 'm365relay_verdicts_total{instance="gw",job="m",verdict="tempfail",reason="store-error"}'
        values: '0+5x60'
    alert_rule_test:
      - eval_time: 15m
        alertname: M365RelayMailboxMessagesNearLimit
        exp_alerts:
          - exp_labels: {severity: warning, instance: gw, job: m, mailbox: erp@contoso.com}
            exp_annotations:
              summary: "erp@contoso.com: message window over 90% of its limit"
              description: "erp@contoso.com on gw has used 93.33% of its message limit for 10 minutes; mail for it waits in the Postfix queue.  Spread the senders over more mailboxes (m365ctl status shows the windows)."
      - eval_time: 15m
        alertname: M365RelayMailboxRecipientsNearLimit
      - eval_time: 5m
        alertname: M365RelayStoreDown
        exp_alerts:
          - exp_labels: {severity: critical, instance: gw, job: m}
            exp_annotations:
              summary: "m365relay state store failing on gw"
              description: "The last state store operation of m365-milter on gw failed and it has not recovered for 2 minutes; mail that needs the store gets store { on_error }. The milter's log names the error (\\"state store failing\\")."
      - eval_time: 1m
        alertname: M365RelayStoreDown
      - eval_time: 9m
        alertname: M365RelayStoreErrors
        exp_alerts:
          - exp_labels: {severity: warning, instance: gw, job: m}
            exp_annotations:
              summary: "m365relay state store errors on gw"
              description: "8 state store operations failed in the last 10 minutes on gw (the store may be flapping: see the milter's log)."
      - eval_time: 40m
        alertname: M365RelayTempfailsRising
        exp_alerts:
          - exp_labels: {severity: warning, instance: gw, job: m}
            exp_annotations:
              summary: "m365relay deferring 33.33% of messages"
              description: "m365-milter on gw answered 33.33% of messages with a temporary failure over 15 minutes.  By reason: sum by (reason) (rate(m365relay_verdicts_total{verdict=\\"tempfail\\"}[15m]))."
      - eval_time: 40m
        alertname: M365RelayNothingDelivered
        exp_alerts:
          - exp_labels: {severity: critical, instance: gw, job: m}
            exp_annotations:
              summary: "m365relay accepts mail but delivers none on gw"
              description: "m365-milter on gw accepted mail in the last hour, yet no mailbox has a recipient delivered in its window: check the token (m365ctl token test APP --mailbox ADDRESS), the transport's log and the Postfix queue (mailq)."
      - eval_time: 10m
        alertname: M365RelayMetricsAbsent
  - interval: 1m
    input_series:
      - series: 'm365relay_verdicts_total{instance="gw",job="m",verdict="accept",reason="ok"}'
        values: '0 _x10'
    alert_rule_test:
      - eval_time: 12m
        alertname: M365RelayMetricsAbsent
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "no m365relay metrics"
              description: "Prometheus has scraped no m365-milter page for 5 minutes: the milter is down, milter { metrics_listen } is not set, or the scrape fails (see Status > Targets)."
TESTS
if out=$(promtool test rules "$tmp/alerts-test.yml" 2>&1); then ok "alert rules fire as intended (promtool test rules)"
else fail "promtool test rules: $out"; fi

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
