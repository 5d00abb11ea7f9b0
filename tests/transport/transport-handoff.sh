#!/bin/bash
# transport-handoff.sh - the transport suites again (tests/transport/suites.sh),
# every delivery made by m365-handoff, handed to a m365-transport -D
# daemon the harness runs: the same command lines, replies, exit statuses
# and reports as pipe(8) running m365-transport (tests/transport/harness.py).
M365_TRANSPORT_MODE=handoff
. "${top_srcdir:-.}/tests/transport/suites.sh"
