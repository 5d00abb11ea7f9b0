/*
 * check_admission.c - step 6 as a pure function (lib/policy/admission.h):
 * which windows are asked, and the reply for each answer of the store
 * under each configured action.
 */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "policy/admission.h"

struct ask_case {
	enum mode mode;
	bool mailbox;
	enum fail_action msgs, rcpts;
	bool want_rcpts, want_msgs;
};

static const struct ask_case ask_cases[] = {
    {.mode = MODE_SMTP_AUTH,
     .mailbox = true,
     .msgs = FAIL_TEMPFAIL,
     .rcpts = FAIL_TEMPFAIL,
     .want_rcpts = true,
     .want_msgs = true},
    {.mode = MODE_SMTP_AUTH,
     .mailbox = true,
     .msgs = FAIL_ACCEPT,
     .rcpts = FAIL_REJECT,
     .want_rcpts = true,
     .want_msgs = false},
    {.mode = MODE_SMTP_AUTH,
     .mailbox = true,
     .msgs = FAIL_REJECT,
     .rcpts = FAIL_ACCEPT,
     .want_rcpts = false,
     .want_msgs = true},
    {.mode = MODE_SMTP_AUTH, .mailbox = true, .msgs = FAIL_ACCEPT, .rcpts = FAIL_ACCEPT},
    /* no mailbox, or a mode without per-mailbox limits: the transport paces */
    {.mode = MODE_SMTP_AUTH, .mailbox = false, .msgs = FAIL_TEMPFAIL, .rcpts = FAIL_TEMPFAIL},
    {.mode = MODE_DIRECT_SEND, .mailbox = true, .msgs = FAIL_TEMPFAIL, .rcpts = FAIL_TEMPFAIL},
    {.mode = MODE_RELAY, .mailbox = true, .msgs = FAIL_TEMPFAIL, .rcpts = FAIL_TEMPFAIL},
};

struct reply_case {
	enum fail_action msgs, rcpts, on_error;
	struct admit_answer answer;
	enum verdict verdict;
	const char *code, *xcode;
	enum reason reason;
	const char *text; /* a part of the text; NULL: r untouched */
};

/* 2026-12-02T08:30:05Z */
#define AT 1796200205000ULL

static const struct reply_case reply_cases[] = {
    {.msgs = FAIL_TEMPFAIL,
     .rcpts = FAIL_TEMPFAIL,
     .answer = {ADMIT_OK, false, 0},
     .verdict = VERDICT_ACCEPT,
     .reason = REASON_OK},
    {.msgs = FAIL_TEMPFAIL,
     .rcpts = FAIL_TEMPFAIL,
     .answer = {ADMIT_FULL, false, AT},
     .verdict = VERDICT_TEMPFAIL,
     .code = "451",
     .xcode = "4.7.0",
     .reason = REASON_MESSAGE_LIMIT,
     .text = "box@contoso.com reached 30/60s messages; retry after 08:30:05Z"},
    {.msgs = FAIL_REJECT,
     .rcpts = FAIL_TEMPFAIL,
     .answer = {ADMIT_FULL, false, AT},
     .verdict = VERDICT_REJECT,
     .code = "550",
     .xcode = "5.7.0",
     .reason = REASON_MESSAGE_LIMIT,
     .text = "reached 30/60s messages"},
    {.msgs = FAIL_TEMPFAIL,
     .rcpts = FAIL_TEMPFAIL,
     .answer = {ADMIT_FULL, true, AT},
     .verdict = VERDICT_TEMPFAIL,
     .code = "451",
     .xcode = "4.7.0",
     .reason = REASON_RECIPIENT_LIMIT,
     .text = "box@contoso.com reached 10000/24h recipients; retry after 08:30:05Z"},
    {.msgs = FAIL_TEMPFAIL,
     .rcpts = FAIL_REJECT,
     .answer = {ADMIT_FULL, true, UINT64_MAX},
     .verdict = VERDICT_REJECT,
     .code = "550",
     .xcode = "5.7.0",
     .reason = REASON_RECIPIENT_LIMIT,
     .text = "retry after never (more than the limit at once)"},
    /* over a limit whose action is accept: the message goes (the transport paces) */
    {.msgs = FAIL_ACCEPT,
     .rcpts = FAIL_TEMPFAIL,
     .answer = {ADMIT_FULL, false, AT},
     .verdict = VERDICT_ACCEPT,
     .reason = REASON_OK},
    /* the store failing: store { on_error } */
    {.on_error = FAIL_TEMPFAIL,
     .answer = {ADMIT_FAILED, false, 0},
     .verdict = VERDICT_TEMPFAIL,
     .code = "451",
     .xcode = "4.3.0",
     .reason = REASON_STORE_ERROR,
     .text = "Gateway state store unavailable; try again later"},
    {.on_error = FAIL_REJECT,
     .answer = {ADMIT_FAILED, false, 0},
     .verdict = VERDICT_REJECT,
     .code = "550",
     .xcode = "5.3.0",
     .reason = REASON_STORE_ERROR,
     .text = "state store unavailable"},
    {.on_error = FAIL_ACCEPT,
     .answer = {ADMIT_FAILED, false, 0},
     .verdict = VERDICT_ACCEPT,
     .reason = REASON_OK},
};

static struct mailbox_conf box = {
    .name = "box@contoso.com", .messages = {30, 60}, .recipients = {10000, 86400}};

START_TEST(test_ask)
{
	const struct ask_case *c = &ask_cases[_i];
	struct conf conf;
	struct policy_msg m;
	struct admit_ask ask;

	memset(&conf, 0, sizeof(conf));
	memset(&m, 0, sizeof(m));
	conf.milter.messages_action = c->msgs;
	conf.milter.recipients_action = c->rcpts;
	m.mode = c->mode;
	m.mailbox = c->mailbox ? &box : NULL;
	memset(&ask, 0xff, sizeof(ask));
	admission_ask(&conf, &m, &ask);
	ck_assert_msg(ask.recipients == c->want_rcpts, "case %d: recipients asked %d", _i,
	              ask.recipients);
	ck_assert_msg(ask.messages == c->want_msgs, "case %d: messages asked %d", _i, ask.messages);
}
END_TEST

START_TEST(test_reply)
{
	const struct reply_case *c = &reply_cases[_i];
	struct conf conf;
	struct policy_msg m;
	struct reply r = {.verdict = VERDICT_ACCEPT, .reason = REASON_OK};

	memset(&conf, 0, sizeof(conf));
	memset(&m, 0, sizeof(m));
	conf.milter.messages_action = c->msgs;
	conf.milter.recipients_action = c->rcpts;
	conf.store.on_error = c->on_error;
	m.mode = MODE_SMTP_AUTH;
	m.mailbox = &box;
	admission_reply(&conf, &m, &c->answer, &r);
	ck_assert_msg(r.verdict == c->verdict, "case %d: verdict %d", _i, r.verdict);
	ck_assert_msg(r.reason == c->reason, "case %d: reason %s", _i, reason_name(r.reason));
	if (c->text == NULL) {
		ck_assert_msg(r.text[0] == '\0', "case %d: text \"%s\"", _i, r.text);
		return;
	}
	ck_assert_str_eq(r.code, c->code);
	ck_assert_str_eq(r.xcode, c->xcode);
	ck_assert_msg(strstr(r.text, c->text) != NULL, "case %d: \"%s\" lacks \"%s\"", _i, r.text,
	              c->text);
}
END_TEST

int
main(void)
{
	static const struct check_suite suite = {"admission", "admission", NULL, NULL, 0};
	const struct check_test tests[] = {CHECK_LOOP(test_ask, ask_cases),
	                                   CHECK_LOOP(test_reply, reply_cases)};

	return check_main(&suite, tests, CHECK_ROWS(tests));
}
