"""Smoke test for the private firebase-admin internals tests/fakes/fcm_transport.py relies on.

If this fails after a firebase-admin upgrade, the seam moved: update ``point_app_at`` (and only it),
then the version pin in pyproject.toml.
"""

from __future__ import annotations

import firebase_admin
import requests
from firebase_admin import _http_client, messaging

from geofence.service import clock
from tests.fakes.fcm_transport import PROJECT, AnonymousCredential, FakeFcmServer, point_app_at


def test_firebase_admin_is_the_pinned_minor():
    assert firebase_admin.__version__.startswith("7.7."), (
        f"firebase-admin {firebase_admin.__version__}: the FCM test seam was written for 7.7.x"
    )


def test_private_attributes_used_by_the_seam_still_exist():
    app = firebase_admin.initialize_app(AnonymousCredential(), {"projectId": PROJECT}, name="seam-smoke")
    try:
        service = messaging._get_messaging_service(app)
        assert service._fcm_url == f"https://fcm.googleapis.com/v1/projects/{PROJECT}/messages:send"
        assert isinstance(service._client.session, requests.Session)
        assert isinstance(_http_client.DEFAULT_RETRY_CONFIG.new(backoff_factor=0).status_forcelist, list)
        assert 503 in _http_client.DEFAULT_RETRY_CONFIG.status_forcelist
    finally:
        firebase_admin.delete_app(app)


def test_the_seam_really_routes_sends_to_the_loopback_fake():
    app = firebase_admin.initialize_app(AnonymousCredential(), {"projectId": PROJECT}, name="seam-route")
    try:
        with FakeFcmServer() as fcm:
            point_app_at(app, fcm)
            message_id = messaging.send(messaging.Message(fid="fid-1", data={"k": "v"}), app=app)
        assert message_id == f"projects/{PROJECT}/messages/1"
        assert fcm.requests[0].message == {"fid": "fid-1", "data": {"k": "v"}}
    finally:
        firebase_admin.delete_app(app)


def test_the_provider_gives_its_app_the_bounded_retry_policy_on_the_real_fcm_url():
    from campaigns.providers.fcm import SEND_RETRY, FcmProvider

    p = FcmProvider(credential=AnonymousCredential(), project_id=PROJECT, timeout_s=3.0, clock=clock.now)
    try:
        service = messaging._get_messaging_service(p.app)
        adapter = service._client.session.get_adapter(service._fcm_url)
        assert adapter.max_retries is SEND_RETRY
        assert service._client.timeout == 3.0
    finally:
        p.close()
