"""How the demo tells what happened: the report it returns and the observer that reads, after each
batch, the zone events, decisions and sends the engine recorded, and narrates them (phones masked).

Apart from the steps (``geofence.service.demo``) because it only reads: it shows what the real tables
hold, not what the demo expected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlmodel import Session

from geofence.service.demo_scenario import PARIS

if TYPE_CHECKING:
    from geofence.service.runtime import Runtime

Emit = Callable[[str], None]


@dataclass
class DemoReport:
    workdir: Path
    fixes: int = 0
    zone_events: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    stop_cancelled: int = 0
    stop_line: str = ""
    export_files: list[Path] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0


def store_time(at: datetime) -> str:
    return at.astimezone(PARIS).strftime("%Y-%m-%d %H:%M:%S")


def masked(phone: str | None) -> str:
    from campaigns.providers.errors import mask

    return str(mask(phone))


class Observer:
    """Reads what the engine did since the last look (zone events, decisions, sends) and narrates it."""

    def __init__(self, runtime: Runtime, names: dict[str, str], zone_names: dict[str, str], emit: Emit,
                 report: DemoReport) -> None:  # fmt: skip
        self.runtime, self.names, self.zone_names, self.emit, self.report = (
            runtime,
            names,
            zone_names,
            emit,
            report,
        )
        self.seen_events: set[str] = set()
        self.statuses: dict[str, str] = {}

    def _who(self, customer_id: str | None) -> str:
        return self.names.get(customer_id or "", "unknown device")

    def look(self) -> None:
        from geofence.service.tables.campaigns import Delivery
        from geofence.service.tables.presence import ZoneEventRow

        with Session(self.runtime.engine) as session:
            events = (
                session.execute(
                    select(ZoneEventRow).order_by(ZoneEventRow.at, ZoneEventRow.id)  # type: ignore[arg-type]
                )
                .scalars()
                .all()
            )
            deliveries = (
                session.execute(
                    select(Delivery).order_by(Delivery.created_at, Delivery.id)  # type: ignore[arg-type]
                )
                .scalars()
                .all()
            )
            phones = self._phones(session)
        for e in events:
            if e.id in self.seen_events:
                continue
            self.seen_events.add(e.id)
            zone = self.zone_names.get(e.zone_id, e.zone_id)
            line = f"{store_time(e.at)}  {e.kind.upper():<5} {zone:<36} {self._who(e.customer_id)}"
            self.report.zone_events.append(line)
            self.emit(f"  zone   {line}")
        # same batch, same instant: order by who, so every run prints the same story
        deliveries = sorted(deliveries, key=lambda d: (d.created_at, self._who(d.customer_id), d.id))
        for d in deliveries:
            before = self.statuses.get(d.id)
            if before == d.status:
                continue
            self.statuses[d.id] = d.status
            who = self._who(d.customer_id)
            if before is None:
                verdict = {"pending": "SEND", "deferred": "DEFER", "skipped": "SKIP"}.get(d.status, d.status)
                line = f"{d.campaign_id:<17} -> {who:<8} {verdict:<5} ({d.reason or 'ok'}) via {d.channel}"
                self.report.decisions.append(line)
                self.emit(f"  decide {line}")
            if d.status in ("sent", "delivered") and before not in ("sent", "delivered"):
                to = masked(phones.get(d.customer_id or "")) if d.channel == "sms" else f"{who}'s phone"
                line = f"{d.channel.upper():<4} to {to}: {(d.title + ' — ') if d.title else ''}{d.body}"
                self.report.sent.append(line)
                self.emit(f"  sent   {line}")
            elif d.status == "cancelled":
                self.emit(f"  cancel {d.campaign_id} -> {who}: {d.reason}")

    @staticmethod
    def _phones(session: Session) -> dict[str, str | None]:
        from geofence.service.tables.customers import Customer

        return {c.id: c.phone_e164 for c in session.execute(select(Customer)).scalars()}
