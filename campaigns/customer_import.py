"""Use case: bulk import of customers and their consents from CSV.

Columns (header names, any order; only ``crm_id`` is required): ``crm_id``, ``phone``, ``first_name``,
``locale``, ``tz``, ``country``, ``subdivision``, ``sms_marketing``, ``push_marketing``,
``location_offers`` (yes/no/true/false/1/0/oui/non; empty = no information), ``consent_wording``,
``consent_version``, ``consent_at`` (ISO 8601; a time without offset is read in the row's ``tz``), and
``attr_<name>`` free attributes.

Each line is applied in its own savepoint: a bad line is reported by its number and reason and leaves
nothing behind, the good lines are kept. A consent is recorded only when it changes the state, so
importing the same file twice adds nothing. An SMS grant for a suppressed number (STOP by SMS, or an
erased customer) is not recorded: the line is reported in ``suppressed``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from campaigns.consent import Purpose, Source, changed, consent_state
from campaigns.customers import (
    CustomerError,
    CustomerInput,
    find_by_crm_id,
    ledger,
    record_consent,
    suppression_of,
    upsert_customer,
    valid_tz,
)

KNOWN_COLUMNS = frozenset(
    {"crm_id", "phone", "first_name", "locale", "tz", "country", "subdivision", "consent_wording",
     "consent_version", "consent_at"} | {p.value for p in Purpose}
)  # fmt: skip
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "oui", "o", "granted", "opt_in"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "non", "withdrawn", "opt_out"})
MAX_ERRORS_KEPT = 1000


@dataclass(frozen=True)
class LineProblem:
    line: int
    reason: str


@dataclass
class ImportReport:
    lines: int = 0
    created: int = 0
    updated: int = 0
    consents_recorded: int = 0
    errors: list[LineProblem] = field(default_factory=list)
    suppressed: list[LineProblem] = field(default_factory=list)  # lines whose SMS grant was refused
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.errors)


def _flag(value: str, column: str) -> bool | None:
    word = value.strip().lower()
    if not word:
        return None
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise CustomerError(f"{column}: {value[:20]!r} is not yes/no")


def _when(value: str, tz: str, at: datetime) -> datetime:
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)  # 3.11: also "2025-01-31" and a trailing "Z"
    except ValueError:
        raise CustomerError(f"consent_at: {text[:40]!r} is not an ISO 8601 date or time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(valid_tz(tz)))
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:
        raise CustomerError(f"consent_at: {text[:40]!r} is out of range") from None
    if parsed > at:
        raise CustomerError("consent_at is in the future")
    return parsed


def _apply_row(
    session: Session, row: dict[str, str], line: int, report: ImportReport,
    *, at: datetime, hash_key: str, recorded_by: str,
) -> None:  # fmt: skip
    crm_id = (row.get("crm_id") or "").strip()
    if not crm_id:
        raise CustomerError("crm_id is empty")
    flags = {p: _flag(row.get(p.value) or "", p.value) for p in Purpose}
    existing = find_by_crm_id(session, crm_id)
    attributes = dict(existing.attributes) if existing is not None else {}
    attributes.update({k[5:]: v.strip() for k, v in row.items() if k.startswith("attr_") and k[5:] and v})
    data = CustomerInput(
        crm_id=crm_id,
        phone=row.get("phone") or None,
        first_name=row.get("first_name") or None,
        locale=row.get("locale") or None,
        tz=row.get("tz") or None,
        country=row.get("country") or None,
        subdivision=row.get("subdivision") or None,
        attributes=attributes,
    )
    customer_id = existing.id if existing is not None else None
    customer, created = upsert_customer(session, data, at=at, hash_key=hash_key, customer_id=customer_id)
    wanted = {p: v for p, v in flags.items() if v is not None}
    if not wanted:
        report.created += created
        report.updated += not created
        return
    if not (row.get("consent_at") or "").strip():
        raise CustomerError("consent_at is required when a consent column is filled (proof of when)")
    occurred_at = _when(row["consent_at"], customer.tz, at)
    entries = ledger(session, customer.id)
    state = consent_state(entries, at)  # the ledger itself: a withdrawal is recorded even if suppressed
    seq = max((e.seq or 0 for e in entries), default=0)
    suppressed = wanted.get(Purpose.SMS_MARKETING) and suppression_of(session, customer.phone_hash)
    recorded, refused = 0, []
    for purpose, granted in wanted.items():
        if granted and purpose is Purpose.SMS_MARKETING and suppressed:
            refused.append(LineProblem(line, "number is suppressed: sms_marketing not granted"))
            continue
        if not changed(state, purpose, granted):
            continue
        seq += 1
        record_consent(
            session, customer_id=customer.id, purpose=purpose, granted=granted, source=Source.IMPORT, at=at,
            occurred_at=occurred_at, wording=row.get("consent_wording") or None,
            wording_version=row.get("consent_version") or None, recorded_by=recorded_by,
            evidence={"import_line": line}, seq=seq,
        )  # fmt: skip
        recorded += 1
    report.created += created
    report.updated += not created
    report.consents_recorded += recorded
    report.suppressed.extend(refused)


def import_customers(
    session: Session,
    lines: Iterable[str],
    *,
    at: datetime,
    hash_key: str,
    recorded_by: str = "import",
    on_line: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import CSV text (an open file or any iterable of lines); returns the report. Flushes, never commits.

    Raises ``CustomerError`` only when the header itself is unusable (nothing is imported then).
    """
    reader = csv.DictReader(iter(lines))
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise CustomerError(f"line 1: the header cannot be read ({exc})") from exc
    if not header or "crm_id" not in header:
        raise CustomerError("line 1: the header must name a crm_id column")
    report = ImportReport()
    report.ignored_columns = [c for c in header if c not in KNOWN_COLUMNS and not c.startswith("attr_")]
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            _problem(report, reader.line_num, f"unreadable CSV ({exc})")
            continue
        line = reader.line_num
        report.lines += 1
        if None in row or any(v is None for v in row.values()):
            _problem(report, line, f"expected {len(header)} fields")
        else:
            try:
                with session.begin_nested():
                    _apply_row(session, row, line, report, at=at, hash_key=hash_key, recorded_by=recorded_by)
            except CustomerError as exc:
                _problem(report, line, str(exc))
            except IntegrityError:
                _problem(report, line, "conflicts with another customer (duplicate crm_id?)")
        if on_line is not None:
            on_line(line)
    return report


def _problem(report: ImportReport, line: int, reason: str) -> None:
    if len(report.errors) < MAX_ERRORS_KEPT:
        report.errors.append(LineProblem(line, reason))
