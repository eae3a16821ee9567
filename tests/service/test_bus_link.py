"""The fix stream and the lease bucket as the settings ask, on the local NATS server (a 3-node cluster's
replicas: ``test_deploy_cluster``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from nats.js import api
from nats.js.errors import ServerError

from geofence.service.bus.acks import NotAcknowledged
from geofence.service.bus.link import NatsLink
from geofence.service.settings import PartitionedIngestSettings
from tests.service.bus_support import drop_names, own_names, require_nats


@pytest.fixture
def names() -> Iterator[tuple[str, PartitionedIngestSettings]]:
    url = require_nats()
    config = own_names()
    yield url, config
    drop_names(url, config)


def _stream(url: str, config: PartitionedIngestSettings) -> api.StreamInfo:
    link = NatsLink(url, config)
    try:
        js = link.connect()
        return link.call(js.stream_info(config.stream))
    finally:
        link.close()


def test_the_fix_stream_is_made_with_the_replicas_setting_and_brought_to_the_settings_later(
    names: tuple[str, PartitionedIngestSettings],
) -> None:
    url, config = names
    made = _stream(url, config)
    assert made.config.num_replicas == config.replicas == 1
    assert made.config.max_age == config.max_age_s
    # an operator shortened the replay horizon: a process started with it brings the stream there
    shorter = config.model_copy(update={"max_age_s": 3600})
    assert _stream(url, shorter).config.max_age == 3600


def test_a_replicas_setting_the_server_cannot_hold_fails_the_connection_loudly(
    names: tuple[str, PartitionedIngestSettings],
) -> None:
    url, config = names
    _stream(url, config)
    # one server, not a cluster: JetStream refuses 3 replicas, and the process says so at start-up
    with pytest.raises(ServerError, match="replicas"):
        _stream(url, config.model_copy(update={"replicas": 3}))
    assert _stream(url, config).config.num_replicas == 1  # the stream is as it was


def test_a_lease_bucket_made_with_another_ttl_is_brought_to_the_settings(
    names: tuple[str, PartitionedIngestSettings],
) -> None:
    url, config = names
    _stream(url, config)
    longer = config.model_copy(update={"lease_s": 9.0})
    link = NatsLink(url, longer)
    try:
        js = link.connect()
        bucket = link.call(js.stream_info(f"KV_{config.lease_bucket}"))
    finally:
        link.close()
    assert bucket.config.max_age == 9.0 and bucket.config.num_replicas == 1


def test_a_batch_is_acknowledged_only_when_jetstream_stored_every_message(
    names: tuple[str, PartitionedIngestSettings],
) -> None:
    url, config = names
    link = NatsLink(url, config)
    try:
        js = link.connect()
        assert link.nc is not None
        ok = [(f"{config.subject}.{p}", b"x", {"Nats-Msg-Id": f"m{p}"}) for p in range(3)]
        link.call(link.acks.publish_all(link.nc, config.stream, ok, 5.0))
        link.call(link.acks.publish_all(link.nc, config.stream, ok, 5.0))  # a retry: duplicates, stored once
        assert link.call(js.stream_info(config.stream)).state.messages == 3
        nowhere = [*ok, ("no.stream.holds.this", b"x", {"Nats-Msg-Id": "lost"})]
        with pytest.raises(NotAcknowledged, match="no responders"):
            link.call(link.acks.publish_all(link.nc, config.stream, nowhere, 5.0))
        with pytest.raises(NotAcknowledged, match="error"):  # another stream holds the subject
            link.call(link.acks.publish_all(link.nc, "ANOTHER_STREAM", ok[:1], 5.0))
    finally:
        link.close()
