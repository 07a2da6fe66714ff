"""Signed, expiring download URLs for artifacts: how a function's runtime fetches its code.

A runtime container on a Knative cluster has no console session or API token. At start it
downloads its version's canonical zip from ``{PUBLIC_URL}/artifacts/<sha256>.zip?sig=...``;
the signature is a ``TimestampSigner`` signature over the sha256 (salt ``stratus.artifact``,
keyed by SECRET_KEY), so a URL names exactly one artifact and stops working
STRATUS_ARTIFACT_URL_TTL_S seconds after it was issued. The runtime verifies the sha256 of
what it downloaded itself, so the URL only has to prove the right to read, not integrity.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import reverse
from django.views.decorators.http import require_GET

from apps.core.errors import json_error
from apps.functions.artifacts import artifact_bytes
from apps.functions.models import Artifact

SALT = "stratus.artifact"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=SALT)


def artifact_signature(*, sha256: str) -> str:
    """The ``sig`` query value for ``sha256``: ``<timestamp>:<mac>`` (the sha256 itself is in the path)."""
    signed = _signer().sign(sha256)
    return signed[len(sha256) + 1 :]


def artifact_signed_url(*, artifact: Artifact, ttl_s: int) -> str:
    """An absolute URL downloading ``artifact`` until about ``ttl_s`` seconds from now.

    The expiry is enforced on download against STRATUS_ARTIFACT_URL_TTL_S (a TimestampSigner
    carries the signing time, not a deadline); ``ttl_s`` must not exceed it, so a caller cannot
    mint a URL that outlives the configured policy.
    """
    if ttl_s > settings.STRATUS_ARTIFACT_URL_TTL_S:
        raise ValueError(
            f"ttl_s {ttl_s} exceeds STRATUS_ARTIFACT_URL_TTL_S ({settings.STRATUS_ARTIFACT_URL_TTL_S}): "
            "downloads are checked against the configured lifetime"
        )
    path = reverse("artifact-download", kwargs={"sha256": artifact.sha256})
    query = urlencode({"sig": artifact_signature(sha256=artifact.sha256)})
    return f"{settings.PUBLIC_URL}{path}?{query}"


@require_GET
def artifact_download(request: HttpRequest, sha256: str) -> HttpResponseBase:
    """Stream an artifact's zip to whoever holds a valid, unexpired signature for it."""
    sig = request.GET.get("sig", "")
    if not _SHA256.match(sha256) or not sig:
        return json_error(
            403, "artifact_signature_invalid", "artifact URL signature is missing or invalid: use a signed URL"
        )
    try:
        _signer().unsign(f"{sha256}:{sig}", max_age=settings.STRATUS_ARTIFACT_URL_TTL_S)
    except signing.SignatureExpired:
        return json_error(
            403,
            "artifact_signature_expired",
            f"artifact URL signature has expired: signed URLs are valid for "
            f"{settings.STRATUS_ARTIFACT_URL_TTL_S} seconds",
        )
    except signing.BadSignature:
        return json_error(
            403, "artifact_signature_invalid", "artifact URL signature is missing or invalid: use a signed URL"
        )
    # The signature was minted by us for this sha256, so looking the row up by it is safe.
    artifact = Artifact.objects.filter(sha256=sha256).first()
    if artifact is None:
        return json_error(404, "not_found", f"artifact {sha256} does not exist")
    response = HttpResponse(artifact_bytes(artifact=artifact), content_type="application/zip")
    response["Content-Length"] = str(artifact.size)
    response["Content-Disposition"] = f'attachment; filename="{sha256}.zip"'
    return response
