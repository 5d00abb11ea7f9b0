#!/bin/bash
# transport-lmtp.sh - the transport suites again (tests/transport/suites.sh),
# every delivery through m365-transport -L, the LMTP delivery service,
# spoken to as Postfix's lmtp(8) does, instead of a pipe(8) process: the
# same simulator, replies, journal, windows and trust rules
# (tests/transport/harness.py run_lmtp).  Where the modes differ by design
# (pipe(8)'s command line, its one exit status for all recipients, the
# report the transport writes itself) the tests say what each mode must do.
M365_TRANSPORT_MODE=lmtp
. "${top_srcdir:-.}/tests/transport/suites.sh"
