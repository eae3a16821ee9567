"""The default channel: stores each rendered message in a JSON-lines file and prints it. No network,
no credentials, so the embedded default and the demo run anywhere and still go through the same
outbox path as FCM and Twilio.

Files: ``<outbox_dir>/push.jsonl`` and ``<outbox_dir>/sms.jsonl``, one JSON object per message. The
recipient is stored and printed masked (privacy: the outbox file is not a contact list).
"""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from campaigns.providers.base import Channel, OutboundMessage, PermanentError, SendResult
from campaigns.providers.errors import mask

_FILE_LOCK = threading.Lock()  # scheduler threads share the file



def outbox_record(msg: OutboundMessage, *, message_id: str, at: datetime) -> dict[str, Any]:
    """What the outbox stores for one message (pure)."""
    return {
        "id": message_id,
        "accepted_at": at.isoformat(),
        "delivery_id": msg.delivery_id,
        "idempotency_key": msg.idempotency_key,
        "channel": msg.channel.value,
        "to": mask(msg.to),
        "platform": msg.platform,
        "locale": msg.locale,
        "title": msg.title,
        "body": msg.body,
        "data": {str(k): str(v) for k, v in msg.data.items()},
        "expires_at": msg.expires_at.isoformat() if msg.expires_at else None,
    }


class OutboxProvider:
    """Serves one channel; the registry builds one per channel."""

    name = "outbox"
    send_budget_s = 1.0  # one line appended to a local file

    def __init__(
        self,
        channel: Channel,
        *,
        outbox_dir: Path,
        echo: bool = True,
        stream: TextIO | None = None,
        clock: Callable[[], datetime],  # the service's clock.now: adapters read the wall clock there
    ) -> None:
        self.channel = channel
        self.path = Path(outbox_dir) / f"{channel.value}.jsonl"
        self.echo = echo
        self._stream = stream
        self._clock = clock

    def send(self, msg: OutboundMessage) -> SendResult:
        at = self._clock()
        if msg.expires_at is not None and msg.expires_at <= at:
            raise PermanentError("the offer expired before it could be sent", code="expired")
        message_id = f"outbox-{uuid.uuid4().hex}"
        line = json.dumps(outbox_record(msg, message_id=message_id, at=at), ensure_ascii=False)
        with _FILE_LOCK:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
        if self.echo:
            title = f"{msg.title} — " if msg.title else ""
            print(f"[outbox {self.channel.value} → {mask(msg.to)}] {title}{msg.body}",
                  file=self._stream or sys.stdout)
        return SendResult(provider_message_id=message_id, accepted_at=at, status="delivered")

    def read(self) -> list[dict[str, Any]]:
        """Everything this channel stored, oldest first (for the demo and tests)."""
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
