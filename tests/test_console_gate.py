"""Console bodies: at most a few KiB, refused before they are read, and only urlencoded forms."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.testclient import TestClient

from api.console.gate import MAX_CONSOLE_BYTES
from tests import test_console
from tests.test_console import PASSWORD, csrf

client = test_console.client


def test_a_huge_declared_upload_to_sign_in_is_refused_before_it_is_read(
    client: TestClient,
) -> None:
    # Declares 300 MB and sends a few bytes: only a refusal from the header answers at once.
    answer = client.post(
        "/console/sign-in",
        content=b"--x\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=x", "Content-Length": "314572800"},
    )
    assert answer.status_code == 413
    assert "at most 16 KiB" in answer.text
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")


def test_a_chunked_body_over_the_cap_is_refused(client: TestClient) -> None:
    token = csrf(client)

    def chunks() -> Iterator[bytes]:
        yield f"csrf={token}&name=ada&password=".encode()
        for _ in range(MAX_CONSOLE_BYTES // 1024 + 1):
            yield b"x" * 1024

    answer = client.post(
        "/console/sign-in",
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 413


def test_only_urlencoded_forms_are_taken(client: TestClient) -> None:
    token = csrf(client)
    multipart = client.post(
        "/console/sign-in",
        files={"upload": ("a.txt", b"hello")},
        data={"csrf": token, "name": "ada", "password": PASSWORD},
        follow_redirects=False,
    )
    assert multipart.status_code == 415 and "Not a form" in multipart.text
    as_json = client.post(
        "/console/sign-in", json={"csrf": token, "name": "ada", "password": PASSWORD}
    )
    assert as_json.status_code == 415
    assert client.get("/console/inbox", follow_redirects=False).status_code == 303
    form = client.post(
        "/console/sign-in",
        data={"csrf": token, "name": "ada", "password": PASSWORD},
        follow_redirects=False,
    )
    assert form.status_code == 303
