"""What a chat platform (or a website's backend) posts to ``/webhooks/chat``, read and checked.

Field problems are 422s naming the field (as the /v1 routes answer them), so a developer
wiring a platform sees which field is wrong, not only that something is.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from conversations.addresses import normalize_chat_id
from conversations.channel_names import MAX_TEXT
from conversations.errors import InvalidAddress, WebhookRejected

MAX_METADATA_BYTES = 4096  # kept on the message and shown by the API: context, not content
MAX_PROVIDER_ID = 128  # the messages.provider_id column


class ChatPost(BaseModel):
    """The webhook's JSON body. Unknown fields are ignored: a platform may send more."""

    model_config = ConfigDict(extra="ignore", strict=True, str_strip_whitespace=True)

    id: str = Field(..., min_length=1, max_length=MAX_PROVIDER_ID)
    user_id: str
    text: str = Field(..., min_length=1, max_length=MAX_TEXT["chat"])
    service: str | None = Field(None, min_length=1, max_length=64)
    metadata: dict[str, Any] | None = None

    @field_validator("user_id")
    @classmethod
    def _user(cls, value: str) -> str:
        try:
            return normalize_chat_id(value)
        except InvalidAddress as exc:
            raise ValueError(str(exc)) from None

    @field_validator("service")
    @classmethod
    def _service(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("a service name has no control characters")
        return value

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value).encode()) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is at most {MAX_METADATA_BYTES} bytes of JSON")
        return value


def read_post(body: bytes) -> ChatPost:
    """400 if ``body`` is not a JSON object, 422 naming each field that is wrong."""
    try:
        data = json.loads(body)
    except ValueError as exc:  # also UnicodeDecodeError
        raise WebhookRejected(400, f"malformed JSON: {exc}") from None
    except RecursionError:  # 30,000 nested "[": the decoder's own depth guard
        raise WebhookRejected(400, "malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise WebhookRejected(400, "the body must be a JSON object")
    try:
        return ChatPost.model_validate(data)
    except ValidationError as exc:
        # The API's own handler turns this into the 422 problem every /v1 route answers.
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None
