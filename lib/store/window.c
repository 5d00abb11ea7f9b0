/*
 * window.c - sliding windows, recipient buckets and session slots.
 */
#include "config.h"

#include <string.h>

#include "window.h"

/* Drop stamps that have left the window (t <= now - W). */
static void
msg_prune(uint64_t *stamps, size_t *n, uint64_t window_ms, uint64_t now)
{
	size_t i = 0;

	if (now < window_ms)
		return;
	while (i < *n && stamps[i] <= now - window_ms)
		i++;
	if (i > 0) {
		memmove(stamps, stamps + i, (*n - i) * sizeof(*stamps));
		*n -= i;
	}
}

/* The time the stamp s frees a place: s + W, or, for a stamp still ahead of
 * now (a message in flight, counted until its sender retimes it), soon:
 * the caller looks again rather than trust a provisional time. */
static uint64_t
frees_at(uint64_t s, uint64_t window_ms, uint64_t now)
{
	return s > now ? now + WIN_POLL_MS : s + window_ms;
}

uint64_t
win_msg_count(const uint64_t *stamps, size_t n, uint64_t count, uint64_t window_ms, uint64_t now,
              uint64_t *free_at)
{
	size_t i = 0, in;

	while (now >= window_ms && i < n && stamps[i] <= now - window_ms)
		i++;
	in = n - i;
	if (free_at != NULL) {
		/* The k-th most recent must leave for a new one to fit. */
		if (in < count)
			*free_at = now;
		else
			*free_at = frees_at(stamps[n - count], window_ms, now);
	}
	return in;
}

/* insert - t into the sorted stamps[0..n), after any equal ones */
static void
insert(uint64_t *stamps, size_t n, uint64_t t)
{
	size_t i = n;

	while (i > 0 && stamps[i - 1] > t) {
		stamps[i] = stamps[i - 1];
		i--;
	}
	stamps[i] = t;
}

int
win_msg_take(uint64_t *stamps, size_t *n, size_t cap, uint64_t count, uint64_t window_ms,
             uint64_t now, uint64_t hold_ms, uint64_t *free_at)
{
	msg_prune(stamps, n, window_ms, now);
	if (*n >= count) {
		*free_at = frees_at(stamps[*n - count], window_ms, now);
		return 0;
	}
	if (*n >= cap) {
		/* Cannot happen with cap >= count; refuse rather than overflow. */
		*free_at = now + WIN_POLL_MS;
		return 0;
	}
	insert(stamps, (*n)++, now + hold_ms);
	*free_at = now + hold_ms;
	return 1;
}

int
win_msg_retime(uint64_t *stamps, size_t n, uint64_t old, uint64_t new_stamp)
{
	size_t i;

	for (i = n; i > 0; i--)
		if (stamps[i - 1] == old)
			break;
	if (i == 0)
		return 0;
	/* Take it out, put the new time in its place in the order. */
	memmove(stamps + i - 1, stamps + i, (n - i) * sizeof(*stamps));
	insert(stamps, n - 1, new_stamp);
	return 1;
}

uint64_t
win_bucket_width(uint64_t window_ms)
{
	uint64_t b = window_ms / WINDOW_BUCKETS;
	return b > 0 ? b : 1;
}

/* A bucket counts while its end is after now - W. */
static int
bucket_live(const struct bucket *b, uint64_t width, uint64_t window_ms, uint64_t now)
{
	return b->start + width + window_ms > now;
}

/* When bucket b frees its recipients: its end + W, or, for recipients still
 * in flight (a bucket ahead of now, window.h), soon: look again. */
static uint64_t
bucket_frees(const struct bucket *b, uint64_t width, uint64_t window_ms, uint64_t now)
{
	return b->start > now ? now + WIN_POLL_MS : b->start + width + window_ms;
}

/* prune - drop dead buckets (oldest first) */
static void
bucket_prune(struct bucket *b, size_t *n, uint64_t width, uint64_t window_ms, uint64_t now)
{
	size_t i = 0;

	while (i < *n && !bucket_live(&b[i], width, window_ms, now))
		i++;
	if (i > 0) {
		memmove(b, b + i, (*n - i) * sizeof(*b));
		*n -= i;
	}
}

uint64_t
win_rcpt_sum(const struct bucket *b, size_t n, uint64_t count, uint64_t window_ms, uint64_t now,
             uint64_t *free_at)
{
	uint64_t width = win_bucket_width(window_ms), sum = 0;
	size_t i;

	for (i = 0; i < n; i++)
		if (bucket_live(&b[i], width, window_ms, now))
			sum += b[i].count;
	if (free_at != NULL) {
		uint64_t s = sum;
		*free_at = now;
		for (i = 0; i < n && s + 1 > count; i++) {
			if (!bucket_live(&b[i], width, window_ms, now))
				continue;
			s -= b[i].count;
			*free_at = bucket_frees(&b[i], width, window_ms, now);
		}
	}
	return sum;
}

/*
 * bucket_add - k more in the bucket of time t, keeping the order.  With
 * every place taken, the two oldest merge: counts move later, never lost
 * and never earlier (a window counts them as long or longer).
 */
static void
bucket_add(struct bucket *b, size_t *n, size_t cap, uint64_t width, uint64_t k, uint64_t t)
{
	uint64_t start = t / width * width;
	size_t i;

	for (i = 0; i < *n && b[i].start < start; i++)
		;
	if (i < *n && b[i].start == start) {
		b[i].count += k;
		return;
	}
	if (*n >= cap) {
		if (i == 0 || cap < 2) { /* before them all: into the oldest, later */
			b[0].count += k;
			return;
		}
		b[1].count += b[0].count;
		memmove(b, b + 1, (*n - 1) * sizeof(*b));
		(*n)--;
		i--;
	}
	memmove(b + i + 1, b + i, (*n - i) * sizeof(*b));
	b[i].start = start;
	b[i].count = k;
	(*n)++;
}

int
win_rcpt_take(struct bucket *b, size_t *n, size_t cap, uint64_t count, uint64_t window_ms,
              uint64_t k, uint64_t now, uint64_t hold_ms, uint64_t *free_at)
{
	uint64_t width = win_bucket_width(window_ms), sum = 0, s;
	size_t j;

	bucket_prune(b, n, width, window_ms, now);
	for (j = 0; j < *n; j++)
		sum += b[j].count;
	if (k > count) {
		*free_at = UINT64_MAX; /* never fits */
		return 0;
	}
	if (sum + k > count) {
		s = sum;
		*free_at = now;
		for (j = 0; j < *n && s + k > count; j++) {
			s -= b[j].count;
			*free_at = bucket_frees(&b[j], width, window_ms, now);
		}
		return 0;
	}
	bucket_add(b, n, cap, width, k, now + hold_ms);
	*free_at = now + hold_ms;
	return 1;
}

int
win_rcpt_retime(struct bucket *b, size_t *n, size_t cap, uint64_t window_ms, uint64_t k,
                uint64_t old, uint64_t new_stamp, uint64_t now)
{
	uint64_t width = win_bucket_width(window_ms), start = old / width * width, take;
	size_t i;
	int found = 0;

	bucket_prune(b, n, width, window_ms, now);
	/* Counts only ever move later (bucket_add), so the k taken at old are
	 * in the first live bucket from old's on - unless they have expired. */
	for (i = 0; i < *n && b[i].start < start; i++)
		;
	if (i < *n && start + width + window_ms > now) {
		take = b[i].count < k ? b[i].count : k;
		b[i].count -= take;
		if (b[i].count == 0) {
			memmove(b + i, b + i + 1, (*n - i - 1) * sizeof(*b));
			(*n)--;
		}
		found = 1;
	}
	if (new_stamp != 0)
		bucket_add(b, n, cap, width, k, new_stamp);
	return found;
}

static bool
same_holder(const struct holder *a, const struct holder *b)
{
	return a->boot == b->boot && a->pid == b->pid && a->start == b->start;
}

int
win_slot_take(struct holder *h, size_t *n, size_t cap, uint64_t max, const struct holder *me,
              bool (*alive)(const struct holder *))
{
	size_t i = 0, j = 0;

	for (i = 0; i < *n; i++)
		if (!same_holder(&h[i], me) && alive(&h[i]))
			h[j++] = h[i];
		else if (same_holder(&h[i], me))
			h[j++] = h[i]; /* already ours: keep it once */
	*n = j;
	for (i = 0; i < *n; i++)
		if (same_holder(&h[i], me))
			return 1;
	if (*n >= max || *n >= cap)
		return 0;
	h[(*n)++] = *me;
	return 1;
}

int
win_slot_release(struct holder *h, size_t *n, const struct holder *me)
{
	size_t i;

	for (i = 0; i < *n; i++) {
		if (same_holder(&h[i], me)) {
			memmove(h + i, h + i + 1, (*n - i - 1) * sizeof(*h));
			(*n)--;
			return 1;
		}
	}
	return 0;
}

uint64_t
win_slot_count(const struct holder *h, size_t n, bool (*alive)(const struct holder *))
{
	uint64_t c = 0;
	size_t i;

	for (i = 0; i < n; i++)
		if (alive(&h[i]))
			c++;
	return c;
}
