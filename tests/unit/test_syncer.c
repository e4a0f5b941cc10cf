/* test_syncer.c — the relay's background checkpoints (server/syncer.c):
 * the caller never waits for one, there is one at a time, and the syncer
 * does not go away with one unfinished. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "../../server/syncer.h"
#include "unit.h"

/* A checkpoint the test holds at a gate until it lets it through. */
struct probe {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;                 /* the gate */
    unsigned calls;
    uint64_t last;             /* offset of the last checkpoint that ended */
    pthread_t thread;          /* where the last one ran */
    chute_status answer;
};

static void probe_init(struct probe *p, bool open, chute_status answer)
{
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->open = open;
    p->calls = 0;
    p->last = 0;
    p->answer = answer;
}

static void probe_destroy(struct probe *p)
{
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
}

static chute_status gated_checkpoint(void *arg, uint64_t offset)
{
    struct probe *p = arg;
    pthread_mutex_lock(&p->mu);
    p->calls++;
    pthread_cond_broadcast(&p->cv);
    while (!p->open) pthread_cond_wait(&p->cv, &p->mu);
    p->last = offset;
    p->thread = pthread_self();
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return p->answer;
}

static void probe_open(struct probe *p)
{
    pthread_mutex_lock(&p->mu);
    p->open = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Wait (at most 5 s) until the checkpoint has been entered n times, or
 * with `ended` until offset `off` has come out of it. */
static bool probe_wait(struct probe *p, unsigned n, bool ended, uint64_t off)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    while (rc == 0 && (p->calls < n || (ended && p->last != off)))
        rc = pthread_cond_timedwait(&p->cv, &p->mu, &until);
    bool ok = p->calls >= n && (!ended || p->last == off);
    pthread_mutex_unlock(&p->mu);
    return ok;
}

/* Offer until the syncer takes it (at most 5 s). */
static bool offer_when_free(body_syncer *s, uint64_t off)
{
    for (int i = 0; i < 5000; i++) {
        if (body_syncer_offer(s, off)) return true;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    return false;
}

struct offer { body_syncer *s; uint64_t off; bool taken; };

static void *offer_on_a_thread(void *arg)
{
    struct offer *o = arg;
    o->taken = body_syncer_offer(o->s, o->off);
    return NULL;
}

static void test_an_offer_returns_while_the_checkpoint_is_still_running(void)
{
    struct probe p;
    probe_init(&p, false, CHUTE_OK);
    body_syncer *s;
    CHECK_EQ_INT(body_syncer_new(gated_checkpoint, &p, &s), CHUTE_OK);
    /* offered from a thread of its own, so that an offer that waited for
     * the checkpoint fails here instead of hanging the test */
    struct offer o = {s, 16, false};
    pthread_t t;
    CHECK_EQ_INT(pthread_create(&t, NULL, offer_on_a_thread, &o), 0);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 2;
    int joined = pthread_timedjoin_np(t, NULL, &until);
    CHECK_EQ_INT(joined, 0);                  /* returned with the gate shut */
    CHECK(probe_wait(&p, 1, false, 0));
    probe_open(&p);
    if (joined) pthread_join(t, NULL);
    CHECK(o.taken);
    CHECK(probe_wait(&p, 1, true, 16));
    CHECK(!pthread_equal(p.thread, pthread_self()));
    body_syncer_free(s);
    probe_destroy(&p);
}

static void test_one_checkpoint_at_a_time(void)
{
    struct probe p;
    probe_init(&p, false, CHUTE_OK);
    body_syncer *s;
    CHECK_EQ_INT(body_syncer_new(gated_checkpoint, &p, &s), CHUTE_OK);
    CHECK(body_syncer_offer(s, 16));
    CHECK(probe_wait(&p, 1, false, 0));
    CHECK(!body_syncer_offer(s, 32));         /* busy: refused, nothing queued */
    probe_open(&p);
    CHECK(probe_wait(&p, 1, true, 16));
    CHECK(offer_when_free(s, 48));           /* once it has ended, the next one */
    CHECK(probe_wait(&p, 2, true, 48));
    CHECK_EQ_INT(p.calls, 2);
    body_syncer_free(s);
    probe_destroy(&p);
}

struct opener { struct probe *p; atomic_bool opened; };

static void *open_later(void *arg)
{
    struct opener *o = arg;
    struct timespec pause = {0, 50 * 1000000};
    nanosleep(&pause, NULL);
    atomic_store(&o->opened, true);
    probe_open(o->p);
    return NULL;
}

static void test_free_waits_for_the_checkpoint_in_progress(void)
{
    struct probe p;
    probe_init(&p, false, CHUTE_OK);
    body_syncer *s;
    CHECK_EQ_INT(body_syncer_new(gated_checkpoint, &p, &s), CHUTE_OK);
    CHECK(body_syncer_offer(s, 64));
    CHECK(probe_wait(&p, 1, false, 0));
    struct opener o = {&p, false};
    pthread_t t;
    CHECK_EQ_INT(pthread_create(&t, NULL, open_later, &o), 0);
    body_syncer_free(s);                      /* returns only after the gate opened */
    CHECK(atomic_load(&o.opened));
    CHECK_EQ_INT(p.last, 64);
    pthread_join(t, NULL);
    probe_destroy(&p);
}

static void test_a_failed_checkpoint_leaves_room_for_the_next(void)
{
    struct probe p;
    probe_init(&p, true, CHUTE_ERR_IO);
    body_syncer *s;
    CHECK_EQ_INT(body_syncer_new(gated_checkpoint, &p, &s), CHUTE_OK);
    CHECK(body_syncer_offer(s, 16));
    CHECK(probe_wait(&p, 1, true, 16));
    CHECK(offer_when_free(s, 32));
    CHECK(probe_wait(&p, 2, true, 32));
    body_syncer_free(s);
    probe_destroy(&p);
}

static void test_no_checkpoint_without_an_offer(void)
{
    struct probe p;
    probe_init(&p, true, CHUTE_OK);
    body_syncer *s;
    CHECK_EQ_INT(body_syncer_new(gated_checkpoint, &p, &s), CHUTE_OK);
    CHECK(!body_syncer_offer(s, 0));          /* nothing to make durable */
    body_syncer_free(s);
    CHECK_EQ_INT(p.calls, 0);
    body_syncer_free(NULL);
    probe_destroy(&p);
}

int main(void)
{
    RUN(test_an_offer_returns_while_the_checkpoint_is_still_running);
    RUN(test_one_checkpoint_at_a_time);
    RUN(test_free_waits_for_the_checkpoint_in_progress);
    RUN(test_a_failed_checkpoint_leaves_room_for_the_next);
    RUN(test_no_checkpoint_without_an_offer);
    return unit_done();
}
