"""The on-disk spool, by role: ``directory`` (a client's directory: records, segments to read,
the batch notes, adoption), ``segment`` (one segment file written through a memory map) and
``calls`` (a call's values as a record). It knows files, not HTTP; ``_delivery.spool_source``
is what the delivery thread talks to."""
