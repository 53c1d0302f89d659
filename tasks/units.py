"""A long job's units: a text longer than `max_text_chars` is split once into pieces
(tasks.text) and the pieces grouped into units of about `unit_chars`, each a small record of
its own that any worker may take and batch with other jobs' pieces.

A unit's id is `<job id>.<n>`, its record a job record (so the dispatcher, the reconciler,
leases, claims and retries handle it as they handle a job) with three more fields: `parent`,
`unit` and `pieces` (its exact pieces, so the book's audio is the join of the book's pieces
whichever worker made each). A unit is in no tenant index and holds no active slot: the
tenant sees, counts and cancels the job. When a unit's audio is made, its raw samples are
stored beside the job's audio (`part_key`) and its `Part` is recorded in the job's parts
hash, once; the run that completes the parts names its unit the job's joiner, and that
unit's run joins the parts in order, stores the job's audio and records the job succeeded
(worker.books). A unit run again after its part was recorded synthesizes nothing again:
done pieces are kept, not redone.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from tasks import keys

# Fields of a unit's record besides a job's.
UNIT_FIELDS = ("parent", "unit", "pieces")

_UNIT_ID = re.compile(r"^([^.]+)\.(\d+)$")

# The parts hash of a job: unit index -> Part JSON (expires with the record).
PARTS = keys.PREFIX + ":parts:{job_id}"

# Set for `progress_event_s` after a long job's `job.progress` event, so the workers of its
# units together send at most one per interval.
PROGRESS_GATE = keys.PREFIX + ":progress-gate:{job_id}"


def unit_id(job_id: str, index: int) -> str:
    return f"{job_id}.{index}"


def parent_of(job_id: str) -> tuple[str, int] | None:
    """(job id, unit index) of a unit's id; None for a job's own id."""
    found = _UNIT_ID.match(job_id)
    return (found.group(1), int(found.group(2))) if found else None


def parts_key(job_id: str) -> str:
    return PARTS.format(job_id=job_id)


def progress_gate_key(job_id: str) -> str:
    return PROGRESS_GATE.format(job_id=job_id)


def part_key(storage_key: str, index: int, run: str) -> str:
    """Where one run of unit `index` keeps its raw samples (little-endian float32, its
    pieces end to end) until the job's audio is joined from them. Each run writes its own
    object: two live runs of a unit never mix their samples, and the part recorded first
    names the one that counts."""
    return f"{storage_key}.part{index}.{run}.f32"


class Part(BaseModel):
    """What the joining run needs of a unit besides its samples: each spoken piece's text,
    length in samples and word timings (None when the engine gives none). Pieces the engine
    rejected as text are left out; a unit of nothing but those is a part with no pieces."""

    model_config = ConfigDict(frozen=True)

    # The object holding its samples (`part_key`); '' for a part of no pieces.
    key: str = ""
    sample_rate: int
    texts: list[str]
    lengths: list[int]
    words: list[list[tuple[str, float, float]] | None]
    # The engine's reason when it rejected every piece of the unit (kept for the job's error
    # should every unit be so).
    rejected: str | None = None
