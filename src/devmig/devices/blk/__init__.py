"""The reference block device (``example.org/devices/blk``), releases 1.0.0, 1.1.0 and 2.0.0 of ``acme-blk``.

Theory of operation
-------------------
The device is backed by a real image file. Its path is a host-only setting
(``host={"image": "/path/to.img"}``), never a parameter: the image is opened
at creation and its size, a whole number of ``block-size`` blocks, is the
capacity. :meth:`BlkV1.close` closes it.

The guest, driven by the seeded generator, submits read, write, flush and,
when ``discard=on``, discard requests into ``num-queues`` queues. Each queue
holds ``queue-depth`` requests, and a submission to a full queue is refused
(``busy``). Each step also completes up to three in-flight requests, oldest
first over all queues, so requests are in flight whenever the device stops.
Every release draws the same numbers in the same order, whatever features
are on. A request runs when it completes:

* **read**: each block comes from the write-back cache when it is dirty
  there, else from the image. The log gets the xxh64 of the data.
* **write**: the data is a function of (seed, tag, block index). It stands
  for the guest buffer the request points at, so a destination can run a
  write that reached it still queued. With ``write-cache=on`` the data goes
  to the cache, otherwise straight to the image.
* **flush**: every dirty cached block is written back to the image.
* **discard**: cached copies are dropped and zeros are written to the image.

The write-back cache holds ``queue-depth // 8`` blocks (:func:`cache_blocks`).
A write that needs a slot when every slot is dirty first writes the whole
cache back. A new block takes the lowest free slot.

State
-----
``disk`` (capacity, next tag), ``queues`` (per-queue submitted/completed
indices), ``inflight`` (request arrays in tag order, at most queue-depth
times num-queues), ``counters``, ``cache`` (when ``write-cache=on``: the block
number in each slot, :data:`FREE` for an empty one), ``discard`` (when
``discard=on``) and the optional ``stats`` (from 1.1.0). The cached data is
the bulk region ``cache`` (slot *i* at byte *i* times block-size) rather than a
``bytes`` field, for three reasons. Pre-copy sends it while the guest keeps
writing and re-sends only the pages written again, so downtime does not grow
with the cache. Sections stay small and bounded. The destination receives the
data in place. Slot allocation is the same in every release, so one state
gives one region.

Migration (shared storage)
--------------------------
The source and the destination open the same image. A write the source
completed is either in the image or in the cache, and the cache travels in
the stream. A queued request travels as state, and the destination runs it.
Nothing is lost and nothing runs twice. Only a running device writes the
image, through its work steps and :meth:`BlkV1.flush_all`, so a source that
stopped for the switch-over never writes it again. ``close()`` only closes
the file.

Releases
--------
1.0.0 keeps one Python list per queue and a list of slots that it scans
linearly, and writes back block by block. 1.1.0 adds discard and the optional
``stats`` section, which 1.0.0 skips. 2.0.0 keeps one request ring, a
dict-and-heap cache index, reads each request with a single ``pread`` and
coalesces write-back into one ``pwrite`` per contiguous run. One canonical
configuration gives one state shape and one behaviour in every release.

Layout
------
``_state`` (the state declaration, requests, cache geometry), ``_image``
(opening the host's image file), ``_device`` (1.0.0, which every release
extends) and ``_releases`` (what 1.1.0 and 2.0.0 change).
"""

from devmig.devices.blk._device import BlkV1
from devmig.devices.blk._image import ImageError
from devmig.devices.blk._releases import BlkV1_1, BlkV2
from devmig.devices.blk._state import (
    BLK_MODEL,
    BLK_STATE,
    DISCARD,
    FLUSH,
    FREE,
    READ,
    WRITE,
    Request,
    cache_blocks,
)

__all__ = [
    "BLK_MODEL",
    "BLK_STATE",
    "DISCARD",
    "FLUSH",
    "FREE",
    "READ",
    "WRITE",
    "BlkV1",
    "BlkV1_1",
    "BlkV2",
    "ImageError",
    "Request",
    "cache_blocks",
]
