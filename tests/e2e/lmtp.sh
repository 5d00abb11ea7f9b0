#!/bin/bash
# lmtp.sh - the end-to-end suite, the ways around the milter and local
# submission again,
# with Postfix delivering through lmtp(8) to m365-transport -L under
# spawn(8) instead of pipe(8) (tests/e2e/gateway.py's LMTP mode).  The
# scenarios are the same; where Postfix's own log line differs between
# the two (relay=, the bounce's "said:"), the tests say which they expect.
set -eu
export M365_E2E_MODE=lmtp
/usr/bin/python3 "${top_srcdir:-.}/tests/e2e/test_e2e.py"
/usr/bin/python3 "${top_srcdir:-.}/tests/e2e/test_trust.py"
exec /usr/bin/python3 "${top_srcdir:-.}/tests/e2e/test_sendmail.py"
