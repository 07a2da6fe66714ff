from __future__ import annotations

from rest_framework import serializers

from apps.functions.models import Version


class VersionSerializer(serializers.ModelSerializer):
    sha256 = serializers.CharField(source="artifact.sha256", read_only=True)
    size = serializers.IntegerField(source="artifact.size", read_only=True)
    file_count = serializers.IntegerField(source="artifact.file_count", read_only=True)
    unpacked_size = serializers.IntegerField(source="artifact.unpacked_size", read_only=True)
    author = serializers.CharField(source="author.username", default=None, read_only=True)

    class Meta:
        model = Version
        fields = [
            "number",
            "sha256",
            "size",
            "file_count",
            "unpacked_size",
            "config",
            "source",
            "source_info",
            "message",
            "author",
            "created_at",
        ]


class VersionFilesCreateSerializer(serializers.Serializer):
    """JSON form: a map of path → UTF-8 text."""

    files = serializers.DictField(child=serializers.CharField(allow_blank=True, trim_whitespace=False))
    message = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class VersionUploadSerializer(serializers.Serializer):
    """Multipart form: a zip in `archive`."""

    archive = serializers.FileField()
    message = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class VersionFileEntrySerializer(serializers.Serializer):
    path = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()


class FileContentSerializer(serializers.Serializer):
    path = serializers.CharField()
    content = serializers.CharField()
    encoding = serializers.ChoiceField(choices=["utf-8", "base64"])
    sha256 = serializers.CharField()
    size = serializers.IntegerField()


def file_payload(path: str, data: bytes) -> dict[str, object]:
    """A file as JSON: text when it decodes as UTF-8, base64 otherwise."""
    import base64
    import hashlib

    try:
        content, encoding = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        content, encoding = base64.b64encode(data).decode("ascii"), "base64"
    return {
        "path": path,
        "content": content,
        "encoding": encoding,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
