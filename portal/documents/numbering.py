"""Gap-free document numbers: per kind and calendar year, 1, 2, 3... with none missing.

The counter row is created once (an insert that skips an existing one) and then advanced by
one UPDATE ... RETURNING in the transaction that issues the document. The UPDATE holds the
row until that transaction ends: a concurrent issuer waits for it, then reads the advanced
value (PostgreSQL re-reads a row updated under it); a rollback undoes the advance with the
document, so the number is given again, never lost. SQLite's one writer at a time does the
same. Callers take the counter last, after their other locks (the payment's), so that issuers
wait on it for as short a time as possible and always in the same order.
"""

from __future__ import annotations

import sqlalchemy as sa

from ..database import insert_or_skip
from ..extensions import db
from .models import DocumentCounter


def next_number(kind: str, year: int) -> int:
    """The next number of ``kind`` in ``year``, taken in the caller's transaction."""
    db.session.execute(insert_or_skip(DocumentCounter, ["kind", "year"]),
                       [{"kind": kind, "year": year, "next_value": 1}])
    return int(db.session.execute(
        sa.update(DocumentCounter)
        .where(DocumentCounter.kind == kind, DocumentCounter.year == year)
        .values(next_value=DocumentCounter.next_value + 1)
        .returning(DocumentCounter.next_value - 1)
        .execution_options(synchronize_session=False)).scalar_one())


def formatted(kind: str, year: int, value: int) -> str:
    """INV-2026-000123."""
    return f"{kind}-{year}-{value:06d}"
