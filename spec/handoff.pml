/*
 * handoff.pml -- the devmig migration hand-off, checked exhaustively by spin.
 *
 * The model of src/devmig/migration/_handoff_tables.py (docs/handoff.md explains it).
 * The phase, message and outcome names are the Python enums' names
 * (tests/spec/test_spin.py checks that, and that every phase change written
 * here is a transition of the Python tables and back).
 *
 * What may happen, anywhere, in any order:
 *   - any message on the connection is lost or delayed (channels are buffered
 *     and a send may drop its message);
 *   - either side may decide the connection is lost or has stalled (timeout)
 *     while it waits on it, and the source may cancel before COMMITTING;
 *   - either agent may crash at any point (at most once each): its copy of
 *     the device dies with it; its journal survives; the restarted agent
 *     answers queries from the journal alone. (A source restarted IN_DOUBT
 *     also asks the destination until it learns the outcome, to report it;
 *     it never resumes -- its copy died -- so where the device runs does not
 *     depend on it, and that resolver is not modelled.) Whether an agent will crash is
 *     chosen at the start, so that a run stuck without a crash is also
 *     explored without a pending crash that would mask it;
 *   - out-of-band queries and their answers may be lost (at most MAX_LOSS of
 *     them: a fairness assumption, "an agent that keeps asking is answered"),
 *     delayed, and processed after their sender died; a waiting asker gives up
 *     and asks again when nothing else can happen (timeout), or early
 *     (at most MAX_SPURIOUS times);
 *   - the destination's load may fail, and either side's journal write may fail.
 *
 * Checked:
 *   - safety (asserts): the device never runs on both sides; the source
 *     resumes only while it holds the device, the destination starts only
 *     once it holds it, and the source releases only once it does not;
 *   - the end (Monitor): every run ends with both sides settled, and the
 *     device runs on exactly the side that holds it -- or nowhere, when the
 *     process holding its only copy crashed (holder == NOBODY);
 *   - termination: with -DNP, no cycle exists (every run reaches an end).
 *
 * Ghost state (not part of the protocol): holder says who holds the device.
 * It starts at SRC, passes to DST when the destination journals STARTED, and
 * becomes NOBODY when the agent holding it crashes -- except that a source
 * crashing after it journaled COMMITTED, while the destination holds a loaded
 * copy, passes the device to the destination (which must then start it).
 */

#ifndef MAX_LOSS
#define MAX_LOSS 2
#endif
#ifndef MAX_SPURIOUS
#define MAX_SPURIOUS 1
#endif

mtype:msg = { HELLO, READY, REFUSED, GO, ACK, ABORT, QUERY, STATUS };
mtype:source_phase = { CONNECTING, STREAMING, WAIT_READY, COMMITTING, COMMITTED, IN_DOUBT, DONE, ROLLED_BACK };
mtype:destination_phase = { WAIT_HELLO, REJECTED, RESUMING, WAIT_GO, WAIT_DECISION, STARTING, RUNNING, DESTROYED };
mtype:outcome = { STARTED, PROCEED, ABORTED, PENDING };
mtype:side = { SRC, DST, NOBODY };

/* the migration connection, one direction each */
chan s2d = [2] of { mtype:msg };
chan d2s = [2] of { mtype:msg };
/* out of band: the source asks the destination agent, and the reverse */
chan sq = [2] of { mtype:msg };
chan sr = [2] of { mtype:msg, mtype:outcome };
chan dq = [2] of { mtype:msg };
chan dr = [2] of { mtype:msg, mtype:outcome };

mtype:source_phase sphase = CONNECTING;
mtype:destination_phase dphase = WAIT_HELLO;
bool src_alive = true;
bool dst_alive = true;
bool src_committed = false;   /* source journal: COMMITTED (survives a crash) */
bool dst_started = false;     /* destination journal: STARTED (survives a crash) */
bool stream_sent = false;     /* the stream's last byte has left the source */
bool src_waiting = false;     /* the source has a query outstanding */
bool dst_waiting = false;     /* the destination has a query outstanding */
byte losses = 0;
byte spurious = 0;

/* ghosts */
bool src_running = true;      /* the device runs on the source */
bool dst_running = false;     /* the device runs on the destination */
bool src_resumed = false;     /* the source ran again after it stopped for the migration */
bool dst_ran = false;         /* the destination ever ran the device */
bool src_may_crash = false;   /* chosen at the start: this run crashes the source agent once */
bool dst_may_crash = false;
mtype:side holder = SRC;

#define s_to(p) sphase = p
#define d_to(p) dphase = p

#define src_settled (!src_alive || sphase == DONE || sphase == ROLLED_BACK)
#define dst_settled (!dst_alive || dphase == REJECTED || dphase == RUNNING || dphase == DESTROYED)
#define settled (src_settled && dst_settled)
#define dst_loaded (dst_alive && (dphase == WAIT_GO || dphase == WAIT_DECISION || dphase == STARTING))

/* a message on the connection: delivered later, or lost */
inline send(ch, m) {
  if
  :: nfull(ch) -> ch!m
  :: true
  fi
}

/* an out-of-band message: delivered later, or lost (a bounded number of times) */
inline send_oob(ch, m) {
  if
  :: nfull(ch) -> ch!m
  :: losses < MAX_LOSS -> losses++
  :: full(ch) -> skip
  fi
}

inline reply(ch, o) {
  if
  :: nfull(ch) -> ch!STATUS, o
  :: losses < MAX_LOSS -> losses++
  :: full(ch) -> skip
  fi
}

/* the two safety properties, checked wherever a side starts running */
inline safety() {
  assert(!(src_running && dst_running));  /* never two RUNNING copies */
  assert(!(src_resumed && dst_ran))       /* at most one side ever runs after the stop */
}

inline resume() {
  src_resumed = src_resumed || !src_running;
  src_running = true;
  safety();
  assert(holder == SRC)
}

inline release() {
  assert(holder != SRC);
  src_running = false
}

active proctype Source() {
  if
  :: src_may_crash = true
  :: skip
  fi;
end:
  do
  /* -- the hand-off over the connection -- */
  :: atomic { src_alive && sphase == CONNECTING -> send(s2d, HELLO); s_to(STREAMING) }
  :: atomic { src_alive && sphase == CONNECTING -> s_to(ROLLED_BACK); resume() }  /* cannot connect; cancel */
  :: atomic { src_alive && sphase == STREAMING -> src_running = false; stream_sent = true; s_to(WAIT_READY) }
  :: atomic { src_alive && sphase == STREAMING && d2s?[REFUSED] -> d2s?REFUSED; s_to(ROLLED_BACK); resume() }
  :: atomic { src_alive && sphase == STREAMING -> s_to(ROLLED_BACK); resume() }  /* connection lost, timeout, cancel */
  :: atomic { src_alive && sphase == WAIT_READY && d2s?[READY] -> d2s?READY; s_to(COMMITTING) }
  :: atomic { src_alive && sphase == WAIT_READY && d2s?[REFUSED] -> d2s?REFUSED; s_to(ROLLED_BACK); resume() }
  :: atomic { src_alive && sphase == WAIT_READY -> send(s2d, ABORT); s_to(ROLLED_BACK); resume() }  /* connection lost, timeout, cancel */
  :: atomic { src_alive && sphase == COMMITTING && !src_committed -> src_committed = true }  /* journal: COMMITTED */
  :: atomic { src_alive && sphase == COMMITTING && !src_committed -> send(s2d, ABORT); s_to(ROLLED_BACK); resume() }  /* journal write failed */
  :: atomic { src_alive && sphase == COMMITTING && src_committed -> send(s2d, GO); s_to(COMMITTED) }
  :: atomic { src_alive && sphase == COMMITTED && d2s?[ACK] -> d2s?ACK; s_to(DONE); release() }
  :: atomic { src_alive && sphase == COMMITTED && d2s?[REFUSED] -> d2s?REFUSED; s_to(ROLLED_BACK); resume() }
  :: atomic { src_alive && sphase == COMMITTED -> s_to(IN_DOUBT) }  /* rule: after COMMITTED, no ACK means in doubt */

  /* -- in doubt: ask the destination agent until it answers -- */
  :: atomic { src_alive && sphase == IN_DOUBT && !src_waiting -> send_oob(sq, QUERY); src_waiting = true }
  :: atomic { src_alive && sphase == IN_DOUBT && sr?[STATUS, STARTED] -> sr?STATUS, STARTED; s_to(DONE); release() }
  :: atomic { src_alive && sphase == IN_DOUBT && sr?[STATUS, ABORTED] -> sr?STATUS, ABORTED; s_to(ROLLED_BACK); resume() }
  :: atomic { src_alive && sphase == IN_DOUBT && sr?[STATUS, PENDING] -> sr?STATUS, PENDING }
  :: atomic { src_alive && sphase == IN_DOUBT && src_waiting && timeout -> src_waiting = false }
  :: atomic { src_alive && sphase == IN_DOUBT && src_waiting && spurious < MAX_SPURIOUS -> spurious++; src_waiting = false }

  /* -- the source agent answers the destination's QUERY -- */
  :: atomic { dq?[QUERY] && !src_alive -> dq?QUERY;
       if
       :: src_committed -> reply(dr, PROCEED)
       :: else -> reply(dr, ABORTED)
       fi }
  :: atomic { dq?[QUERY] && src_alive && (sphase == CONNECTING || sphase == STREAMING || sphase == WAIT_READY) ->
       dq?QUERY; s_to(ROLLED_BACK); resume(); reply(dr, ABORTED) }
  :: atomic { dq?[QUERY] && src_alive && sphase == COMMITTING -> dq?QUERY; reply(dr, PENDING) }
  :: atomic { dq?[QUERY] && src_alive && (sphase == COMMITTED || sphase == IN_DOUBT || sphase == DONE) ->
       dq?QUERY; reply(dr, PROCEED) }
  :: atomic { dq?[QUERY] && src_alive && sphase == ROLLED_BACK -> dq?QUERY; reply(dr, ABORTED) }

  /* -- the source agent crashes: its copy dies, its journal survives -- */
  :: atomic { src_alive && src_may_crash && !settled ->
       src_alive = false; src_may_crash = false; src_running = false;
       if
       :: holder == SRC && src_committed && dst_loaded -> holder = DST
       :: holder == SRC && !(src_committed && dst_loaded) -> holder = NOBODY
       :: else -> skip
       fi }
  od
}

active proctype Destination() {
  if
  :: dst_may_crash = true
  :: skip
  fi;
end:
  do
  /* -- the hand-off over the connection -- */
  :: atomic { dst_alive && dphase == WAIT_HELLO && s2d?[HELLO] -> s2d?HELLO; d_to(RESUMING) }
  :: atomic { dst_alive && dphase == WAIT_HELLO && s2d?[HELLO] -> s2d?HELLO; send(d2s, REFUSED); d_to(REJECTED) }  /* secret expired, reused */
  :: atomic { dst_alive && dphase == WAIT_HELLO -> d_to(REJECTED) }  /* no HELLO in time */
  :: atomic { dst_alive && dphase == RESUMING && stream_sent -> send(d2s, READY); d_to(WAIT_GO) }  /* RESUMING -> STOP validated */
  :: atomic { dst_alive && dphase == RESUMING -> send(d2s, REFUSED); d_to(DESTROYED) }  /* the load failed */
  :: atomic { dst_alive && dphase == RESUMING && s2d?[ABORT] -> s2d?ABORT; d_to(DESTROYED) }
  :: atomic { dst_alive && dphase == RESUMING -> d_to(DESTROYED) }  /* connection lost, timeout */
  :: atomic { dst_alive && dphase == WAIT_GO && s2d?[GO] -> s2d?GO; d_to(STARTING) }
  :: atomic { dst_alive && dphase == WAIT_GO && s2d?[ABORT] -> s2d?ABORT; d_to(DESTROYED) }
  :: atomic { dst_alive && dphase == WAIT_GO -> d_to(WAIT_DECISION) }  /* no GO: connection lost, timeout */

  /* -- no decision: ask the source agent until it answers -- */
  :: atomic { dst_alive && dphase == WAIT_DECISION && !dst_waiting -> send_oob(dq, QUERY); dst_waiting = true }
  :: atomic { dst_alive && dphase == WAIT_DECISION && dr?[STATUS, PROCEED] -> dr?STATUS, PROCEED; d_to(STARTING) }
  :: atomic { dst_alive && dphase == WAIT_DECISION && dr?[STATUS, ABORTED] -> dr?STATUS, ABORTED; d_to(DESTROYED) }
  :: atomic { dst_alive && dphase == WAIT_DECISION && dr?[STATUS, PENDING] -> dr?STATUS, PENDING }
  :: atomic { dst_alive && dphase == WAIT_DECISION && dst_waiting && timeout -> dst_waiting = false }
  :: atomic { dst_alive && dphase == WAIT_DECISION && dst_waiting && spurious < MAX_SPURIOUS -> spurious++; dst_waiting = false }

  /* -- starting: journal STARTED, then run -- */
  :: atomic { dst_alive && dphase == STARTING && !dst_started -> assert(holder != NOBODY); dst_started = true; holder = DST }
  :: atomic { dst_alive && dphase == STARTING && !dst_started -> send(d2s, REFUSED); d_to(DESTROYED);  /* journal write failed */
       if
       :: holder == DST -> holder = NOBODY  /* a failed journal is a failed agent */
       :: else -> skip
       fi }
  :: atomic { dst_alive && dphase == STARTING && dst_started ->
       dst_ran = true; dst_running = true; safety(); assert(holder == DST); send(d2s, ACK); d_to(RUNNING) }

  /* -- the destination agent answers the source's QUERY -- */
  :: atomic { sq?[QUERY] && !dst_alive -> sq?QUERY;
       if
       :: dst_started -> reply(sr, STARTED)
       :: else -> reply(sr, ABORTED)
       fi }
  :: atomic { sq?[QUERY] && dst_alive && (dphase == WAIT_HELLO || dphase == REJECTED) -> assert(false) }
  :: atomic { sq?[QUERY] && dst_alive && dphase == RESUMING -> sq?QUERY; d_to(DESTROYED); reply(sr, ABORTED) }
  :: atomic { sq?[QUERY] && dst_alive && (dphase == WAIT_GO || dphase == WAIT_DECISION) ->
       sq?QUERY; d_to(STARTING); reply(sr, PENDING) }
  :: atomic { sq?[QUERY] && dst_alive && dphase == STARTING -> sq?QUERY; reply(sr, PENDING) }
  :: atomic { sq?[QUERY] && dst_alive && dphase == RUNNING -> sq?QUERY; reply(sr, STARTED) }
  :: atomic { sq?[QUERY] && dst_alive && dphase == DESTROYED -> sq?QUERY; reply(sr, ABORTED) }

  /* -- the destination agent crashes: its copy dies, its journal survives -- */
  :: atomic { dst_alive && dst_may_crash && !settled ->
       dst_alive = false; dst_may_crash = false; dst_running = false;
       if
       :: holder == DST -> holder = NOBODY
       :: else -> skip
       fi }
  od
}

/* When nothing else can happen, both sides have settled and the device runs
 * exactly where its holder is (nowhere when its only copy died). A run that
 * stops anywhere else leaves this process blocked outside an end state, which
 * spin reports as an invalid end state. */
active proctype Monitor() {
  atomic {
    timeout && settled ->
    if
    :: holder == SRC -> assert(src_running && !dst_running)
    :: holder == DST -> assert(dst_running && !src_running)
    :: holder == NOBODY -> assert(!src_running && !dst_running)
    fi
  }
}
