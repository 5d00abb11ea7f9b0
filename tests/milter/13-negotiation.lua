-- The milter asks only for what it uses, so the MTA sends less and waits less.
dofile(common)
start()
local conn = session("192.168.10.7")
check(mt.test_action(conn, SMFIF_CHGFROM), "asks to change the envelope sender")
check(mt.test_action(conn, SMFIF_ADDHDRS), "asks to add headers")
check(mt.test_action(conn, SMFIF_CHGHDRS), "asks to change headers")
check(not mt.test_action(conn, SMFIF_CHGBODY), "never changes the body")
check(not mt.test_action(conn, SMFIF_ADDRCPT), "never adds recipients")
check(not mt.test_action(conn, SMFIF_DELRCPT), "never removes recipients")
check(mt.test_option(conn, SMFIP_NOBODY), "no body")
check(mt.test_option(conn, SMFIP_NOHELO), "no HELO")
check(mt.test_option(conn, SMFIP_NOEOH), "no end-of-headers")
check(mt.test_option(conn, SMFIP_NR_HDR), "no reply to each header")
check(not mt.test_option(conn, SMFIP_NORCPT), "still sees recipients")
-- Postfix sends the DATA macros even with NODATA; answering DATA acks them
-- at once instead of leaving the first header to wait for a delayed ACK.
check(not mt.test_option(conn, SMFIP_NODATA), "answers DATA (no 40 ms stall over TCP)")
mt.disconnect(conn)
