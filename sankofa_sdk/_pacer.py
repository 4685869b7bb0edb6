"""When the next request may start: spending one API key's request budget deliberately.

The engine allows ``L`` requests per window of ``W`` seconds per API key (500 per 60 s), counted
over every process that uses the key, and one batch costs one request whatever its size. The
processes of a fleet do not talk to each other; each decides from what the engine tells it.
Sending less often costs nothing but latency, because a batch takes everything queued: the
pacer trades requests for bigger batches.

The algorithm, per process (pure: a function of the answers and the times it is given):

1. **Allowance.** The process may start at most ``rate`` requests per second, never more than
   ``L / W`` (one process alone can spend the whole budget evenly). It starts at a quarter of
   that: about 2 requests a second, what ``flush_interval`` asks at low traffic anyway.

2. **With rate-limit headers** (``X-RateLimit-Limit/Remaining/Reset``, the open-source engine).
   The fleet's spending ``f`` is measured from ``Remaining``: between two of our answers in one
   window (``used / dt``), or, for a process that answers rarely, over the window so far
   (``(Limit - Remaining) / elapsed``; rough early in a window, so then it only acts on a gross
   overshoot). What the fleet may spend is ``g = 0.9 * min(Remaining / Reset, L / W)``: the
   rest of this window spread evenly, never faster than the budget's own pace (no burst at a
   window's end carries into the next). Then:
   - ``f`` more than 5% over ``g``: every process scales its own actual rate by ``g / f``;
     they all see about the same ``f``, so the fleet lands on ``g`` in one step.
   - ``f`` more than 5% under ``g`` and this process is held back (a batch was due before its
     allowance let it go): it grows by ``g / f``, at most 1.5x per second since it last grew.
     Only held-back processes grow, so this cannot overshoot: the others keep what they use.
   - Within 5% of ``g`` the total is left alone and shares move, as in AIMD: a held-back
     process with full batches takes a step (1/200 of ``L / W``), one with batches less than
     40% full gives 5% back. Requests go where bigger batches no longer help. A held-back
     batch that someone waits for (rule 5) gives nothing back and takes a small step per
     second (1/10,000 of ``L / W``): per second rather than per answer, so processes that
     all flush converge on even shares however often each is answered.
   - Whatever the above says, a held-back process gets at least what carries its own arrival
     rate (and its backlog, over about ten seconds) in 80%-full batches, up to half of ``g``.
   - ``Remaining`` down to the last 2%: wait until the window resets (at most
     ``max_retry_after``), without blaming the pace.
   The window ``W`` is learned as the longest ``Reset`` seen, at most twice the one assumed.

3. **Without headers** (the hosted engine's docs promise none, not even ``Retry-After``), a
   429 is the only signal. The process waits a whole window (an exhausted fixed window has
   certainly ended ``W`` seconds later; at most ``max_retry_after``), then resumes at the
   smaller of 70% of its rate and 75% of what it managed to spend in the last window: if every
   process does that, the fleet lands a quarter under the budget. 429s in a row before anything
   gets through shrink it once. While held back it grows 2% a window, so the fleet probes the
   limit only every several windows, each probe costing about one 429 per process; and it never
   goes below what carries its own arrivals and backlog (1.25x, in 80%-full batches).

4. **429 with ``Retry-After``** (the open-source engine): wait that long (capped by
   ``max_retry_after``, spread by a little jitter), and shrink as in 3. A process younger than
   a window that has seen headers counts its successes over its life, not over a window (a
   few seconds' requests are not a trickle over a minute); the headers measure the fleet
   again as soon as it resumes.

5. **Prompt when the budget allows.** A request someone waits for (a ``flush()``, a shutdown)
   need not wait for this process's pace, only for what the key's budget allows: a process
   that flushes after every task or invocation would otherwise wait ``1 / rate`` (half a
   second at the start) for a budget nobody else touches. Such a request may go at
   ``g - others`` per second, where ``others = f - own`` is what the rest of the fleet
   spends, while the others spend at most half of ``g`` (one process alone, or a few quiet
   ones; in a busy fleet a flush waits its turn like any batch, and even shares come from the
   step of rule 2). Without headers, a process assumes it is alone, and lets such requests go
   at ``0.9 * L / W``, until its first 429 says otherwise; from then on rule 3 alone (a blind
   fleet that assumed it was alone again every few windows would spend each of those windows
   in one burst, then wait a whole window).

The rate never drops below one request per two windows, so a process always gets through; a
fleet of more than ``2 * L`` processes sharing one key would exceed the budget on that floor
alone (the documented limit: 1,000 processes per key at the engine's 500 per 60 s).

``tests/client/test_pacer_simulation.py`` drives many pacers against a model of the engine's
fixed-window limiter with a fake clock and checks requests per window, the share of 429s and
delivery for 1 to 200 processes, with headers and without, and the latency of a flush per
task for 1 to 64 processes (``python -m tests.client.fleet_simulation`` prints the table).
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Mapping
from typing import NamedTuple, Optional

from ._options import DEFAULT_RATE_LIMIT

TARGET_SHARE = 0.9
"""The share of the budget the fleet aims to spend, leaving room for noise and newcomers."""
GROSS_OVERSHOOT = 2.0
MIN_SAMPLE_SECONDS = 0.2
"""Two answers closer together than this say too little about the fleet's spending."""
INITIAL_SHARE = 0.25
"""A new process starts at a quarter of the budget's pace: 2 requests a second at 500 per 60 s,
which is what ``flush_interval`` (0.5 s) asks at low traffic anyway."""
MAX_GROWTH = 1.5
ADDITIVE_STEP = 1 / 200
"""A step of the pace, as a share of the whole budget's pace (``L / W``)."""
YIELD = 0.95
DEAD_BAND = 0.05
"""Within 5% of the target the fleet's total is left alone and only shares move."""
FULL = 0.8
ROOMY = 0.4
"""Batches at least this full (of ``max_batch_size``/``max_batch_bytes``) need more requests;
batches less full than ``ROOMY`` can grow instead."""
BLIND_GROWTH_PER_WINDOW = 0.02
BLIND_RESUME_SHARE = 0.75
SHRINK_ON_429 = 0.7
NEED_HEADROOM = 1.25
NEED_SHARE_CAP = 0.5
DEMAND_SECONDS = 10.0
BACKLOG_DRAIN_SECONDS = 10.0
"""The arrival rate is a moving average over about this long."""
URGENT_STEP = 1 / 10_000
"""A held-back flush on target: a step of the pace per second, as a share of ``L / W``."""
OTHERS_QUIET = 0.5
"""With headers: a flush may use what the rest of the fleet leaves of the target while the rest
spends less than this share of it (one process alone, or a few quiet ones)."""


class RateLimitHeaders(NamedTuple):
    limit: int
    remaining: int
    reset: float
    """Seconds until the window ends (whole seconds from the engine)."""


def read_rate_limit(headers: Mapping[str, str]) -> Optional[RateLimitHeaders]:
    """The ``X-RateLimit-*`` headers of an answer, or None when absent or unreadable."""
    try:
        limit = int(headers["X-RateLimit-Limit"])
        remaining = int(headers["X-RateLimit-Remaining"])
        reset = float(headers["X-RateLimit-Reset"])
    except (KeyError, ValueError, TypeError):
        return None
    if limit < 1 or not 0 <= reset < 86_400:
        return None
    return RateLimitHeaders(limit, max(0, remaining), reset)


class Pacer:
    """One process's view of the key's request budget. Not thread-safe: the worker owns it."""

    def __init__(
        self,
        budget: Optional[tuple[int, float]] = DEFAULT_RATE_LIMIT,
        *,
        batch_size: int = 5_000,
        max_pause: float = 60.0,
        seed: Optional[int] = None,
    ) -> None:
        self.enabled = budget is not None
        limit, window = budget if budget is not None else DEFAULT_RATE_LIMIT
        self._limit = limit
        self._window = float(window)
        self._longest_window = 2 * float(window)
        """An engine that says its window is longer than this is not believed: one odd
        header must not stall a process for days."""
        self._max_pause = max_pause
        self._last_growth: Optional[float] = None
        self._backlog = 0
        self._window_learned = False  # until then, the window assumed from ``budget``
        self._assumed_window = float(window)
        self._window_turned = False
        """A window ended while this process was sending (until then it may have joined its
        first window late, and the ``Reset`` it learned from is not the whole window)."""
        self.rate = self._max_rate() * INITIAL_SHARE
        self._next_start = 0.0
        self._paused_until = 0.0
        self._random = random.Random(seed)
        self._sample: Optional[tuple[float, int]] = None  # (start time, Remaining)
        self._own_since_sample = 0
        self._held_back = False
        self._fullness = 0.0
        self._first_start: Optional[float] = None
        self._batch_size = batch_size
        self._headers_seen = False
        self._arrivals = 0.0
        self._arrivals_at = 0.0
        self._successes: deque[float] = deque()
        self._last_start: Optional[float] = None
        self._shrunk_since_success = False
        self._urgent = False
        self._urgent_gap = 0.0
        self._urgent_cap = TARGET_SHARE * self._max_rate()
        """With headers: how fast flushes may go, from the last answer (0: as the pace says)."""
        self._refused = False

    # --- what the worker asks -------------------------------------------------------------

    def ready_at(self, urgent: bool = False) -> float:
        """The earliest (monotonic) time the next request may start.

        ``urgent``: someone waits for it (a ``flush()``, a shutdown). Such a request goes at
        once whenever the key's budget allows (rule 5), instead of at this process's pace.
        """
        if not self.enabled:
            return 0.0
        start = self._next_start
        if urgent and self._last_start is not None:
            start = min(start, self._last_start + self._urgent_gap)
        return max(start, self._paused_until)

    def started(
        self,
        now: float,
        *,
        held_back: bool,
        fullness: float = 0.0,
        backlog: int = 0,
        urgent: bool = False,
    ) -> None:
        """A request starts at ``now``.

        ``held_back``: its batch was due before ``ready_at``. ``fullness``: how full the batch
        is (0 to 1 of ``max_batch_size`` or ``max_batch_bytes``); a process whose batches are
        full needs more requests, one with small batches only needs patience. ``backlog``:
        operations still waiting after this batch. ``urgent``: someone waits for this batch
        (bigger batches would not help them, only more requests).
        """
        self._held_back = held_back
        self._backlog = backlog
        self._fullness = min(1.0, max(0.0, fullness))
        self._urgent = urgent
        if self._first_start is None:
            self._first_start = now
        self._last_start = now
        self._set_gaps(now)

    def _set_gaps(self, now: float) -> None:
        """When the next request may go after the last one, at this process's pace and for a
        flush (which may go faster while the budget allows)."""
        if self._last_start is None:
            return
        allowance = self._allowance(now)
        self._next_start = self._last_start + 1.0 / allowance
        self._urgent_gap = 1.0 / max(allowance, self._flush_rate())

    def _flush_rate(self) -> float:
        """How fast requests someone waits for may go (rule 5; 0: at the pace, like others)."""
        if self._headers_seen:
            return self._urgent_cap
        return 0.0 if self._refused else TARGET_SHARE * self._max_rate()

    def answered(
        self,
        started_at: float,
        status: Optional[int],
        headers: Mapping[str, str],
        retry_after: Optional[float],
    ) -> None:
        """Learn from the answer to the request started at ``started_at``."""
        if not self.enabled:
            return
        rate, cap = self.rate, self._urgent_cap
        try:
            self._learn(started_at, status, headers, retry_after)
        finally:
            if self.rate != rate or self._urgent_cap != cap or status == 429:
                # The next start follows the new rate at once, so the next measurement shows
                # the fleet after this change rather than before it.
                self._set_gaps(started_at)

    def _learn(
        self,
        started_at: float,
        status: Optional[int],
        headers: Mapping[str, str],
        retry_after: Optional[float],
    ) -> None:
        if status == 429:
            self._on_rate_limited(started_at, retry_after)
            return
        if status is None:
            return  # no answer: says nothing about the budget
        self._forget_before(started_at - self._window)
        self._successes.append(started_at)
        self._shrunk_since_success = False
        info = read_rate_limit(headers)
        if info is not None:
            self._headers_seen = True
            self._on_headers(started_at, info)
        elif self._held_back:
            # No headers: grow slowly (5% per window of being held back), and by a step per
            # request while batches are full (bigger batches no longer help), never past L / W.
            grown = self.rate * (1 + BLIND_GROWTH_PER_WINDOW / (self._window * self.rate))
            self.rate = min(self._max_rate(), grown)

    def arrived(self, now: float, count: int) -> None:
        """``count`` operations were queued at about ``now`` (to learn the steady demand)."""
        kept = math.exp(-(now - self._arrivals_at) / DEMAND_SECONDS) if self._arrivals else 0.0
        self._arrivals = self._arrivals * kept + count
        self._arrivals_at = now

    def _allowance(self, now: float) -> float:
        """Requests per second this process may start now.

        Blind (no headers), never less than what carries the steady arrival rate in batches
        two-thirds full: the pace above that is what the fleet probes and shrinks, the need
        itself is not, or a busy process would fall behind its own arrivals for good. With
        headers the measured budget decides alone (full batches get their share there).
        """
        if self._headers_seen:
            return self.rate
        return max(self.rate, min(self._max_rate(), self._needed_rate(now) * NEED_HEADROOM))

    def _needed_rate(self, now: float) -> float:
        """Requests per second that would carry the recent arrival rate in full batches."""
        if not self._arrivals and not self._backlog:
            return 0.0
        kept = math.exp(-(now - self._arrivals_at) / DEMAND_SECONDS)
        ops_per_second = self._arrivals * kept / DEMAND_SECONDS
        # What keeps arriving, and what is already waiting (drained within about ten seconds): without
        # headers, a backlog left by a pause must not drain at the pace of new arrivals only.
        ops_per_second += self._backlog / BACKLOG_DRAIN_SECONDS
        return ops_per_second / (self._batch_size * FULL)

    def allowance_now(self, now: float) -> float:
        """Requests per second this process may start now (read-only; the metrics read it
        from another thread, and a value a moment old is fine there)."""
        return self._allowance(now)

    def pause(self, now: float, seconds: float) -> None:
        """Send nothing for ``seconds`` (a quota answer, or a shutdown that must not hurry)."""
        self._paused_until = max(self._paused_until, now + seconds)

    @property
    def paused_until(self) -> float:
        """When a pause the engine asked for (429, quota, a spent window) ends."""
        return self._paused_until if self.enabled else 0.0

    @property
    def window(self) -> float:
        return self._window

    # --- the rules ------------------------------------------------------------------------

    def _max_rate(self) -> float:
        return self._limit / self._window

    def _min_rate(self) -> float:
        return 1.0 / (2 * self._window)

    def _on_headers(self, now: float, info: RateLimitHeaders) -> None:
        self._limit = info.limit
        # The window is the longest Reset seen (the first request of a window sees all of it);
        # once the engine speaks, what it says replaces the window assumed from ``budget``.
        # A process that joins late in a window underestimates it for that window only, and
        # the R / T term below keeps it from spending more than that window has left.
        reset = min(info.reset, self._longest_window)
        if not self._window_learned or reset > self._window:
            self._window = max(1.0, reset)
            self._window_learned = True
        reserve = max(1, int(info.limit * 0.02))
        if info.remaining <= reserve:
            # The window is nearly spent: whatever is sent now would be refused. Wait it out.
            wait = min(reset + 0.5, self._max_pause)
            self._paused_until = max(self._paused_until, now + wait)
            self._urgent_cap = 0.0
            return  # the pause is the answer; the pace itself is not to blame
        self._own_since_sample += 1  # this answer's Remaining already counts its request
        measured = self._measure(now, info)
        if measured is None:
            return
        fleet_rate, own_rate, reliable = measured
        target = TARGET_SHARE * min(info.remaining / max(reset, 1.0), self._max_rate())
        # Rule 5: what the others spend, even from a rough view (it errs on the busy side
        # early in a window, which only makes a flush wait its turn).
        others = max(0.0, fleet_rate - own_rate)
        self._urgent_cap = target - others if others <= OTHERS_QUIET * target else 0.0
        spent = info.limit - info.remaining
        gross = fleet_rate > GROSS_OVERSHOOT * target and spent >= info.limit * 0.1
        if not reliable and not gross:
            return  # a rough view only acts on a gross overshoot (a fleet starting together)
        step = self._max_rate() * ADDITIVE_STEP
        if fleet_rate > target * (1 + DEAD_BAND):
            # Over: every process scales its own pace by the same factor.
            self.rate = min(self.rate, own_rate) * target / fleet_rate
        elif not self._held_back:
            pass  # this process sends less than its allowance: nothing to change
        elif fleet_rate < target * (1 - DEAD_BAND):
            # Under: fill the budget fast (multiplicatively, by time rather than by answer,
            # so a process that answers rarely is not slow to grow), at least by one step.
            seconds = 1.0 if self._last_growth is None else max(1.0, now - self._last_growth)
            limit = MAX_GROWTH**seconds
            grown = self.rate * (min(limit, target / fleet_rate) if fleet_rate else limit)
            self.rate = max(grown, self.rate + step)
            self._last_growth = now
        elif self._urgent:
            # On target, and someone waits for each batch (bigger batches would not help
            # them): nothing is given back, and a small step per second since the last growth
            # is taken. Per second, not per answer, so processes that all wait converge on
            # even shares (AIMD) however often each is answered; small, so that together they
            # do not step the fleet over its target.
            seconds = 1.0 if self._last_growth is None else now - self._last_growth
            self.rate += self._max_rate() * URGENT_STEP * min(max(seconds, 0.0), self._window)
            self._last_growth = now
        elif self._fullness >= FULL:
            # On target: requests go where bigger batches no longer help. A process whose
            # batches are full takes a step...
            self.rate += step
        elif self._fullness < ROOMY:
            # ...and one whose batches have room to grow gives some back.
            self.rate = min(self.rate - step / 2, self.rate * YIELD)
        need = self._needed_rate(now)
        if self._held_back and need > self.rate:
            # Whatever the fleet does, a process gets what carries its own arrivals in full
            # batches (up to half the target): the decreases above then come out of the
            # processes that could wait with bigger batches instead.
            self.rate = max(self.rate, min(need, target * NEED_SHARE_CAP))
        self.rate = min(self._max_rate(), max(self._min_rate(), self.rate))

    def _measure(self, now: float, info: RateLimitHeaders) -> Optional[tuple[float, float, bool]]:
        """The fleet's and this process's request rates lately, and whether the view is sound.

        Two answers of one window at least ``MIN_SAMPLE_SECONDS`` apart give the freshest view.
        Otherwise the window so far is the view: ``Limit - Remaining`` requests since it began.
        That needs no second answer (a process sending less than twice a window never has
        two), but ``Reset`` is in whole seconds, so early in a window it is rough: off by up to
        twice, enough to see 200 processes starting together, not to fine-tune.
        """
        previous = self._sample
        same_window = previous is not None and info.remaining < previous[1]
        if previous is not None and same_window and now - previous[0] >= MIN_SAMPLE_SECONDS:
            dt = now - previous[0]
            used, own = previous[1] - info.remaining, self._own_since_sample
            self._sample, self._own_since_sample = (now, info.remaining), 0
            return used / dt, own / dt, True
        if not same_window:
            self._window_turned = self._window_turned or previous is not None
            self._sample, self._own_since_sample = (now, info.remaining), 0
        # The window began between elapsed and elapsed + 1 s ago. In the first window this
        # process sees, it may have joined late: the window is then at least the one assumed,
        # or what others spent before it came would read as spent in the last half second
        # (and slow it to a trickle for a busy fleet that is not there).
        window = self._window if self._window_turned else max(self._window, self._assumed_window)
        elapsed = max(0.5, window - info.reset + 0.5)
        began = now - elapsed
        own = sum(1 for started in self._successes if started > began)
        # A process that only just started measures its own pace over its own life, or it
        # would read as idle and be squeezed to nothing; one request is one interval's worth.
        life = now - self._first_start if self._first_start is not None else 0.0
        own_span = max(min(elapsed, life), 1.0 / self.rate)
        reliable = elapsed >= max(1.0, window / 6) and life >= MIN_SAMPLE_SECONDS
        return (info.limit - info.remaining) / elapsed, own / own_span, reliable

    def _on_rate_limited(self, now: float, retry_after: Optional[float]) -> None:
        self._forget_before(now - self._window)
        self._refused = True
        self._urgent_cap = 0.0
        if not self._shrunk_since_success:
            # Once per exhaustion: 429s in a row before anything gets through again are the
            # same event, and shrinking on each would sink the rate to the floor.
            self._shrunk_since_success = True
            recent = len(self._successes)
            shrunk = self.rate * SHRINK_ON_429
            if recent:
                shrunk = min(shrunk, BLIND_RESUME_SHARE * recent / self._spending_span(now))
            self.rate = min(self._max_rate(), max(self._min_rate(), shrunk))
        self._sample = None
        if retry_after is None:
            # No word on when the window ends: a whole window from now certainly is past it.
            wait = min(self._window * (1 + 0.1 * self._random.random()), self._max_pause)
        else:
            # Spread the fleet's return a little instead of all at the same instant.
            wait = retry_after + self._random.random() * min(1.0, 0.1 + retry_after / 4)
        self._paused_until = max(self._paused_until, now + wait)

    def _spending_span(self, now: float) -> float:
        """Over how long this process's successes of the last window were spread.

        A whole window, unless the engine sends rate-limit headers (which measure the fleet
        again at once after the pause): then a process younger than a window measured its
        pace over its life, or a few seconds' requests would read as a trickle over a minute
        and one 429 would slow it to a request every half minute. Blind, a whole window it
        is: each 429 there costs a window's wait, so resuming too fast is dear.
        """
        if not self._headers_seen or self._first_start is None:
            return self._window
        return min(self._window, max(now - self._first_start, 1.0))

    def _forget_before(self, cutoff: float) -> None:
        successes = self._successes
        while successes and successes[0] < cutoff:
            successes.popleft()
