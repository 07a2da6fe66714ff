from __future__ import annotations

import base64
import binascii
from typing import Any

from rest_framework import serializers


class DraftFileEntrySerializer(serializers.Serializer):
    path = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    updated_at = serializers.DateTimeField()


class DraftTreeEntrySerializer(DraftFileEntrySerializer):
    binary = serializers.BooleanField(
        help_text="The file's first KiB is not UTF-8 text: the file API answers it base64 (download it with ?raw=1)."
    )


class DraftTreeSerializer(serializers.Serializer):
    revision = serializers.IntegerField()
    etag = serializers.CharField(help_text="The draft's ETag, 'rev-<revision>': send it as If-Match to write safely.")
    files = DraftTreeEntrySerializer(many=True)


class DraftArchiveUploadSerializer(serializers.Serializer):
    """Multipart form: the zip in `file`."""

    file = serializers.FileField(
        help_text="A zip of the function's files. Replaces every draft file; one folder wrapping all of them "
        "(GitHub's 'Download ZIP', a zipped folder) is unwrapped unless the handler lives in it."
    )


class DraftFileMetaSerializer(DraftFileEntrySerializer):
    revision = serializers.IntegerField(help_text="The draft's revision after the write.")


class DraftFileWriteSerializer(serializers.Serializer):
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)
    encoding = serializers.ChoiceField(choices=["utf-8", "base64"], default="utf-8")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["encoding"] == "base64":
            try:
                attrs["data"] = base64.b64decode(attrs["content"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise serializers.ValidationError({"content": [f"Not valid base64: {exc}."]})
        else:
            attrs["data"] = attrs["content"].encode("utf-8")
        return attrs


class DraftRenameSerializer(serializers.Serializer):
    to = serializers.CharField(trim_whitespace=False)

    def get_fields(self) -> dict[str, serializers.Field]:
        # "from" is a Python keyword, so it cannot be declared as a class attribute.
        return {"from": serializers.CharField(trim_whitespace=False), **super().get_fields()}


class DraftPublishSerializer(serializers.Serializer):
    message = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class DraftCheckSerializer(serializers.Serializer):
    path = serializers.CharField(
        trim_whitespace=False, help_text="The file's path in the draft: it says whether it is Python."
    )
    content = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="The code to check (the editor's unsaved buffer), at most 1 MB; absent: the draft's saved file.",
    )


class DiagnosticSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="1-based.")
    column = serializers.IntegerField(help_text="1-based, in characters of the line.")
    end_line = serializers.IntegerField()
    end_column = serializers.IntegerField(help_text="Exclusive.")
    severity = serializers.ChoiceField(choices=["error", "warning"])
    code = serializers.CharField(help_text="pyflakes' kind of problem: syntax-error, undefined-name, unused-import…")
    message = serializers.CharField()

    def get_fields(self) -> dict[str, serializers.Field]:
        # "source" is a Field attribute of DRF's, so it cannot be declared as a class attribute.
        return {**super().get_fields(), "source": serializers.CharField(help_text="What found it: pyflakes.")}


class DraftCheckResultSerializer(serializers.Serializer):
    path = serializers.CharField()
    diagnostics = DiagnosticSerializer(many=True)
