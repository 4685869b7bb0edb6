"""Delivery: from an accepted call to the engine's answer. A map for the newcomer.

Threads. The caller's thread validates a call, stamps it and hands it to the worker
(``Worker.submit``: a tuple appended to a deque, or with a spool one record written to disk).
The worker's thread (``sankofa-sdk-worker``) runs the loop; a request thread
(``sankofa-sdk-sender``) runs one request at a time so the worker can cut it at a wall-clock
deadline and keep encoding meanwhile. Nothing else runs in the background.

One ``track()`` call, to the wire::

    Client.track ─► Client._enqueue ─► Worker.submit            (caller: tuple into Backlog.raw)
    worker turn: Worker._fill ─► MemorySource.fill ─► OperationEncoder.encode_into
                 ─► Backlog.add_many                              (JSON runs in the queue)
                 Worker.decide(now) ─► Send(None)                 (batch_due + the pacer)
                 Worker._send_new ─► BatchLedger.start_new(Backlog.take) ─► Batch IN_FLIGHT
                 Worker._send ─► Source.starting ─► RequestThread.start
    request thread: Transport.send                                (the bytes on the wire)
    next turn:   Worker._await_answer ─► Worker._handle ─► Batch DONE ─► Source.finished

One batch a killed process left in its spool, to the wire::

    Worker._fill ─► SpoolSource.fill ─► SpoolSource._adopt        (a dead owner's directory)
                 ─► SpoolSource._recovered: Batch(key, body as noted) ─► BatchLedger.wait
    Worker.decide(now) ─► Send(batch) ─► Worker._send             (same key, same body)
    answer: DONE ─► SpoolSource.finished ─► "done" noted in that directory
            400/413 ─► Worker._split_or_fail ─► SpoolSource.split ─► parts noted with the
            end of the whole, in one write ─► each part goes and is noted done on its own

A batch's states are ``batch.BatchState`` (new, in flight, waiting to retry, done, failed,
returned to the queue, split); the worker's are ``worker.Phase`` (running, stopping, closed).
Every time is read from one ``clock.Clock``. The modules:

- ``worker``: the loop, ``decide``, what an answer does to a batch, shutdown, sync mode, and
  lending (``Turns``: where our threads run only while a caller waits, callers wait for the
  thread's turn when one is due; ``_runtime`` turns it on under uWSGI without threads);
- ``batch``: ``Batch`` and ``BatchLedger`` (every batch in flight or waiting);
- ``sources``: the ``Source`` protocol and ``MemorySource`` (the callers' queue);
- ``spool_source``: ``SpoolSource`` (the disk behind the same protocol, and its notes);
- ``observe``: what the outside sees (``health()``, the metrics): the worker tells the
  ``DeliveryObserver`` about each answer, and ``Worker.pipeline_state`` reads the queue, the
  spool and the pacer from any thread;
- ``encoding``: calls to JSON, and what cannot be sent; ``wire``: gzip or not;
- ``request``: the request thread; ``transport``: the protocol a transport implements;
- ``clock``: time.

The policies they ask stay outside, pure and table-tested: ``_retry`` (waits, give-up),
``_answers`` (what an answer means), ``_pacer`` (the request budget), ``_queue.batch_due``.
"""

from .clock import Clock
from .transport import Transport
from .worker import CUT_GRACE, Worker

__all__ = ["CUT_GRACE", "Clock", "Transport", "Worker"]
