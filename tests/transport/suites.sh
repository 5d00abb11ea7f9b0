# suites.sh - sourced by transport-lmtp.sh and transport-handoff.sh with
# M365_TRANSPORT_MODE set: the transport suites (test_transport,
# test_oauth, test_pacing, test_graph) again, every delivery made in that
# mode (tests/transport/harness.py).
set -eu
export M365_TRANSPORT_MODE
for t in test_transport test_oauth test_pacing test_graph; do
	echo "== $t.py ($M365_TRANSPORT_MODE)"
	/usr/bin/python3 "${top_srcdir:-.}/tests/transport/$t.py"
done
