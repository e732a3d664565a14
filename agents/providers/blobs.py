"""The content-addressed blob store of attachments sent by reference.

Rule: a blob is named by the sha256 of its bytes and never changes, so a message that
names an image by digest means exactly those bytes, in every replay. The session log
keeps only the digest (an `Attachment` without `data`); the bytes are put here by the
client (`turnlog send --image FILE --by-reference`, `Client.attach(..., by_reference=
True)`) and read by the worker when it sends the LLM call. A blob whose bytes do not
hash to its name is treated as missing: nothing unverified reaches a vendor.

`DirectoryBlobStore` keeps each blob in a file named by its digest
(`<dir>/<ab>/<abcdef…>`) under TURNLOG_BLOB_DIR, which clients and workers share (a
volume, a network file system); a team with an object store implements `BlobStore`
(`get`, `put`) over it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from agents.errors import ContractError
from agents.events import Attachment
from agents.llm import LlmRequest, MediaBlock, Message
from agents.providers.base import ErrorType, ProviderError

__all__ = [
    "BlobStore",
    "DirectoryBlobStore",
    "attachment",
    "media_type_of",
    "resolve_media",
    "unresolved_media",
]

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
)


def media_type_of(data: bytes) -> str | None:
    """The media type of an image or document by its first bytes, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _MAGIC if data.startswith(magic)), None)


def attachment(
    source: str | os.PathLike[str] | bytes,
    *,
    media_type: str | None = None,
    name: str | None = None,
    store: BlobStore | None = None,
) -> Attachment:
    """An Attachment of a file (or bytes): inline (base64 in the message) without
    `store`, else put into `store` and sent by reference (its sha256). The media type
    comes from the bytes when not given; ContractError for a file that is neither a PNG,
    JPEG, GIF or WebP image nor a PDF."""
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ContractError(f"Cannot attach {path}: {exc.strerror or exc}.") from None
        name = name or path.name
    kind = media_type or media_type_of(data)
    if kind is None:
        raise ContractError(
            f"Cannot attach {name or 'these bytes'}: not a PNG, JPEG, GIF or WebP image nor a "
            "PDF (by its first bytes); pass media_type= if it is one."
        )
    if store is not None:
        return Attachment(kind, store.put(data), None, name)
    digest = hashlib.sha256(data).hexdigest()
    return Attachment(kind, digest, base64.b64encode(data).decode("ascii"), name)


class BlobStore(Protocol):
    def get(self, sha256: str) -> bytes | None: ...

    def put(self, data: bytes) -> str: ...


class DirectoryBlobStore:
    """Blobs as files named by their sha256 under `root`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"DirectoryBlobStore({str(self.root)!r})"

    def _path(self, sha256: str) -> Path:
        if len(sha256) != 64 or sha256.strip("0123456789abcdef"):
            raise ValueError(f"{sha256!r} is not a sha256 hex digest")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        """Store `data` (once: the same bytes, the same file) and return its sha256."""
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if path.exists():
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside, then renamed: a reader never sees a half-written blob.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, sha256: str) -> bytes | None:
        """The bytes named `sha256`, or None when missing or not matching their name."""
        try:
            data = self._path(sha256).read_bytes()
        except (FileNotFoundError, ValueError):
            return None
        return data if hashlib.sha256(data).hexdigest() == sha256 else None


def unresolved_media(request: LlmRequest) -> list[str]:
    """The digests of the attachments of `request` that carry no bytes."""
    return [
        b.sha256
        for m in request.messages
        for b in m.content
        if isinstance(b, MediaBlock) and b.data is None
    ]


def resolve_media(request: LlmRequest, store: BlobStore | None) -> LlmRequest:
    """`request` with the bytes of every attachment sent by reference filled in from
    `store` (the same request, digest included: the digest names blobs by sha256).
    ProviderError (invalid_request, nothing sent) naming the missing blobs."""
    missing = unresolved_media(request)
    if not missing:
        return request
    found: dict[str, str] = {}
    if store is not None:
        for digest in missing:
            data = store.get(digest)
            if data is not None:
                found[digest] = base64.b64encode(data).decode("ascii")
    absent = sorted(set(missing) - set(found))
    if absent:
        where = repr(store) if store is not None else "no blob store (TURNLOG_BLOB_DIR)"
        raise ProviderError(
            f"No request was sent: attachment(s) {', '.join(d[:12] for d in absent)} are "
            f"not in {where}; put them there before sending the message that names them.",
            error_type=ErrorType.INVALID_REQUEST,
            attempts=0,
            retryable=False,
            model=request.model,
        )
    messages = tuple(
        Message(
            m.role,
            tuple(
                dataclasses.replace(b, data=found[b.sha256])
                if isinstance(b, MediaBlock) and b.data is None
                else b
                for b in m.content
            ),
        )
        for m in request.messages
    )
    return dataclasses.replace(request, messages=messages)
