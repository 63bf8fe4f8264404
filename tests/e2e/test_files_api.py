"""The files API end to end: PUT, GET/HEAD, listings, folders, moves, deletes and their errors."""

import hashlib
import os
import urllib.parse

import pytest

from conftest import curl, make_random_file, raw_exchange, sha256_file


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def test_put_then_get_round_trips_bytes_and_metadata(ferry, tmp_path):
    source = tmp_path / "photo.jpg"
    digest = make_random_file(source, 3_000_017)
    put = curl("-T", str(source), ferry.url("/api/files/album/2026/photo.jpg"))
    assert put.status == 201
    body = put.json()
    assert body["path"] == "album/2026/photo.jpg"
    assert body["size"] == 3_000_017
    assert body["sha256"] == digest
    assert body["modified"].endswith("Z")
    assert put.headers["location"] == "/api/files/album/2026/photo.jpg"
    assert sha256_file(ferry.root / "album/2026/photo.jpg") == digest

    get = curl(ferry.url("/api/files/album/2026/photo.jpg"))
    assert get.status == 200
    assert hashlib.sha256(get.body).hexdigest() == digest
    assert get.headers["content-length"] == "3000017"
    assert get.headers["content-type"] == "image/jpeg"
    assert get.headers["accept-ranges"] == "bytes"
    assert get.headers["etag"].startswith('"')
    assert get.headers["last-modified"].endswith("GMT")
    assert get.headers["content-disposition"].startswith("inline;")
    assert get.headers["x-content-type-options"] == "nosniff"

    head = raw_exchange(ferry.port, b"HEAD /api/files/album/2026/photo.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                    b"Connection: close\r\n\r\n")
    head_lines, _, head_body = head.partition(b"\r\n\r\n")
    assert head_lines.startswith(b"HTTP/1.1 200")
    assert b"Content-Length: 3000017" in head_lines
    assert f"ETag: {get.headers['etag']}".encode() in head_lines
    assert head_body == b"", "HEAD must not send a body"


def test_download_flag_makes_an_attachment(ferry):
    curl("-T", "/dev/null", ferry.url("/api/files/notes.txt"))
    assert curl(ferry.url("/api/files/notes.txt/")).status == 404, "a file is not a folder"
    reply = curl(ferry.url("/api/files/notes.txt?download=1"))
    assert reply.status == 200
    assert reply.headers["content-disposition"].startswith("attachment;")


def test_conditional_get_answers_304_and_412(ferry, tmp_path):
    (tmp_path / "a.txt").write_bytes(b"hello")
    curl("-T", str(tmp_path / "a.txt"), ferry.url("/api/files/a.txt"))
    first = curl(ferry.url("/api/files/a.txt"))
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert curl("-H", f"If-None-Match: {etag}", ferry.url("/api/files/a.txt")).status == 304
    assert curl("-H", 'If-None-Match: "other"', ferry.url("/api/files/a.txt")).status == 200
    assert curl("-H", f"If-Modified-Since: {modified}", ferry.url("/api/files/a.txt")).status == 304
    failed = curl("-H", 'If-Match: "other"', ferry.url("/api/files/a.txt"))
    assert failed.status == 412
    assert failed.error_code() == "precondition_failed"


def test_listing_is_sorted_and_typed(ferry, tmp_path):
    for name in ["b.txt", "a.txt", "Z.txt"]:
        (tmp_path / name).write_bytes(name.encode())
        assert curl("-T", str(tmp_path / name), ferry.url(f"/api/files/docs/{name}")).status == 201
    assert curl("-X", "POST", ferry.url("/api/folders/docs/sub")).status == 201
    listing = curl(ferry.url("/api/files/docs/"))
    assert listing.status == 200
    entries = listing.json()["entries"]
    assert [e["name"] for e in entries] == ["Z.txt", "a.txt", "b.txt", "sub"]
    assert [e["type"] for e in entries] == ["file", "file", "file", "folder"]
    assert entries[1]["size"] == 5
    root = curl(ferry.url("/api/files/")).json()
    assert [e["name"] for e in root["entries"]] == ["docs"], "the .ferry work area must not be listed"


def test_folders_create_idempotently_and_refuse_files(ferry, tmp_path):
    assert curl("-X", "POST", ferry.url("/api/folders/x/y/z")).status == 201
    assert (ferry.root / "x/y/z").is_dir()
    again = curl("-X", "POST", ferry.url("/api/folders/x/y/z"))
    assert again.status == 200 and again.json()["created"] is False
    curl("-T", "/dev/null", ferry.url("/api/files/x/file"))
    clash = curl("-X", "POST", ferry.url("/api/folders/x/file"))
    assert clash.status == 409


def test_delete_file_and_folders(ferry, tmp_path):
    curl("-T", "/dev/null", ferry.url("/api/files/d/one.txt"))
    curl("-T", "/dev/null", ferry.url("/api/files/d/e/two.txt"))
    not_empty = curl("-X", "DELETE", ferry.url("/api/files/d"))
    assert not_empty.status == 409
    assert not_empty.error_code() == "folder_not_empty"
    assert "recursive=1" in not_empty.json()["error"]["message"]
    assert curl("-X", "DELETE", ferry.url("/api/files/d/one.txt")).status == 204
    assert not (ferry.root / "d/one.txt").exists()
    assert curl("-X", "DELETE", ferry.url("/api/files/d?recursive=1")).status == 204
    assert not (ferry.root / "d").exists()
    missing = curl("-X", "DELETE", ferry.url("/api/files/d"))
    assert missing.status == 404
    assert curl("-X", "DELETE", ferry.url("/api/files/")).status == 400


def test_move_renames_and_refuses_to_clobber(ferry, tmp_path):
    (tmp_path / "f").write_bytes(b"one")
    curl("-T", str(tmp_path / "f"), ferry.url("/api/files/a/one.txt"))
    curl("-T", str(tmp_path / "f"), ferry.url("/api/files/taken.txt"))
    moved = curl("-X", "POST", "-H", "Content-Type: application/json",
                 "--data", '{"from": "a/one.txt", "to": "b/c/renamed.txt"}', ferry.url("/api/move"))
    assert moved.status == 200, moved.body
    assert (ferry.root / "b/c/renamed.txt").read_bytes() == b"one"
    assert not (ferry.root / "a/one.txt").exists()
    clash = curl("-X", "POST", "--data", '{"from": "b/c/renamed.txt", "to": "taken.txt"}', ferry.url("/api/move"))
    assert clash.status == 409 and clash.error_code() == "file_exists"
    forced = curl("-X", "POST", "--data", '{"from": "b/c/renamed.txt", "to": "taken.txt", "overwrite": true}',
                  ferry.url("/api/move"))
    assert forced.status == 200
    into_itself = curl("-X", "POST", "--data", '{"from": "b", "to": "b/c/inner"}', ferry.url("/api/move"))
    assert into_itself.status == 400
    os.link(ferry.root / "taken.txt", ferry.root / "twin.txt")
    twins = curl("-X", "POST", "--data", '{"from": "twin.txt", "to": "taken.txt", "overwrite": true}',
                 ferry.url("/api/move"))
    assert twins.status == 200 and not (ferry.root / "twin.txt").exists() and (ferry.root / "taken.txt").exists()
    for bad in ['{"from": "../x", "to": "y"}', '{"from": 1}', "not json", '{"from": "taken.txt", "to": "/abs"}']:
        reply = curl("-X", "POST", "--data", bad, ferry.url("/api/move"))
        assert reply.status == 400, bad
        assert reply.json()["error"]["message"]


@pytest.mark.parametrize("path", [
    "/api/files/../etc/passwd",
    "/api/files/a/%2e%2e/%2e%2e/etc/passwd",
    "/api/files/%2e%2e",
    "/api/files//etc/passwd",
    "/api/files/a%2Fb",
    "/api/files/a%00b",
    "/api/files/a/./b",
    "/api/files/%zz",
    "/api/files/%C3%28",
    "/api/files/.ferry/tmp",
    "/api/files/" + "n" * 256,
])
def test_hostile_paths_get_400_with_json(ferry, path):
    for method_args in (["-X", "GET"], ["-X", "PUT", "--data-binary", "x"], ["-X", "DELETE"]):
        reply = curl("--path-as-is", *method_args, ferry.url(path))
        assert reply.status == 400, (path, method_args, reply.body)
        error = reply.json()["error"]
        assert error["code"] and error["message"]
    assert not any(p.name == "passwd" for p in ferry.root.rglob("*"))


def test_symlink_leading_outside_the_root_is_refused(ferry, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    os.symlink(outside, ferry.root / "escape")
    os.symlink(outside / "secret.txt", ferry.root / "secret-link.txt")
    assert curl(ferry.url("/api/files/escape/secret.txt")).status == 400
    assert curl(ferry.url("/api/files/escape/absent.txt")).status == 400, "no oracle for files outside the root"
    assert curl(ferry.url("/api/files/secret-link.txt")).status == 400
    names = [e["name"] for e in curl(ferry.url("/api/files/")).json()["entries"]]
    assert "escape" not in names and "secret-link.txt" not in names, "links out of the root are not listed"
    put = curl("-T", "/dev/null", ferry.url("/api/files/escape/new.txt"))
    assert put.status == 400
    assert not (outside / "new.txt").exists()
    os.symlink(ferry.root / "inside", ferry.root / "inner-link")
    (ferry.root / "inside").mkdir()
    assert curl("-T", "/dev/null", ferry.url("/api/files/inner-link/ok.txt")).status == 201


def test_unknown_routes_and_methods_get_json_errors(ferry):
    missing = curl(ferry.url("/api/files/nope.txt"))
    assert missing.status == 404 and missing.error_code() == "not_found"
    unknown = curl(ferry.url("/nothing/here"))
    assert unknown.status == 404 and unknown.headers["content-type"].startswith("application/json")
    patch = curl("-X", "PATCH", ferry.url("/api/files/x"))
    assert patch.status == 405
    assert patch.headers["allow"] == "GET, HEAD, PUT, POST, DELETE"
    assert patch.error_code() == "method_not_allowed"
    assert curl("-X", "PUT", "--data", "x", ferry.url("/api/files/folder/")).status == 400
    assert curl("-X", "POST", "--data", "x", ferry.url("/api/files/folder/")).status == 415


def test_every_response_carries_a_request_id(ferry):
    a = curl(ferry.url("/api/files/"))
    b = curl(ferry.url("/api/files/none"))
    assert a.headers["x-request-id"] != b.headers["x-request-id"]
    assert f"id={b.headers['x-request-id']}" in ferry.logs()


def test_conditional_put_and_delete(ferry, tmp_path):
    (tmp_path / "v1").write_bytes(b"version 1")
    (tmp_path / "v2").write_bytes(b"version 2")
    curl("-T", str(tmp_path / "v1"), ferry.url("/api/files/doc.txt"))
    etag = curl("-I", ferry.url("/api/files/doc.txt")).headers["etag"]
    stale = curl("-T", str(tmp_path / "v2"), "-H", 'If-Match: "stale"', ferry.url("/api/files/doc.txt?overwrite=1"))
    assert stale.status == 412 and stale.error_code() == "precondition_failed"
    assert (ferry.root / "doc.txt").read_bytes() == b"version 1"
    fresh = curl("-T", str(tmp_path / "v2"), "-H", f"If-Match: {etag}", ferry.url("/api/files/doc.txt"))
    assert fresh.status == 201, "a matching If-Match is a conditional update"
    assert (ferry.root / "doc.txt").read_bytes() == b"version 2"
    create_only = curl("-T", str(tmp_path / "v1"), "-H", "If-None-Match: *", ferry.url("/api/files/doc.txt?overwrite=1"))
    assert create_only.status == 412
    assert curl("-T", str(tmp_path / "v1"), "-H", "If-None-Match: *", ferry.url("/api/files/new.txt")).status == 201
    assert curl("-X", "DELETE", "-H", f"If-Match: {etag}", ferry.url("/api/files/doc.txt")).status == 412
    new_etag = curl("-I", ferry.url("/api/files/doc.txt")).headers["etag"]
    assert curl("-X", "DELETE", "-H", f"If-Match: {new_etag}", ferry.url("/api/files/doc.txt")).status == 204
    assert curl("-T", str(tmp_path / "v1"), "-H", 'If-Match: "x"', ferry.url("/api/files/absent.txt")).status == 412


def test_dns_rebinding_names_are_refused_on_loopback(start_ferry, tmp_path):
    """A page on evil.example that rebinds its name to 127.0.0.1 is same-origin with itself, so the CORS
    and cross-site checks let it through; the Host header still names evil.example, and Ferry on loopback
    refuses it (421) unless the operator listed the name."""
    ferry = start_ferry()
    (tmp_path / "p").write_bytes(b"pwned")
    rebound = curl("-H", f"Host: evil.example:{ferry.port}", "-H", f"Origin: http://evil.example:{ferry.port}",
                   "-T", str(tmp_path / "p"), ferry.url("/api/files/rebound.txt"))
    assert rebound.status == 421 and rebound.error_code() == "host_not_allowed"
    assert "--allowed-hosts evil.example" in rebound.json()["error"]["message"]
    assert not (ferry.root / "rebound.txt").exists()
    assert curl("-H", f"Host: evil.example:{ferry.port}", ferry.url("/api/files/")).status == 421, "reads too"
    assert curl("-H", f"Host: localhost:{ferry.port}", ferry.url("/api/files/")).status == 200
    assert curl("-H", f"Host: [::1]:{ferry.port}", ferry.url("/api/files/")).status == 200
    listed = start_ferry("--allowed-hosts", "files.example.com", root=tmp_path / "listed")
    assert curl("-H", "Host: files.example.com", "-T", str(tmp_path / "p"), listed.url("/api/files/ok.txt")).status == 201
    assert curl("-H", "Host: evil.example", listed.url("/api/files/")).status == 421
    anything = start_ferry(root=tmp_path / "anything", env={"FERRY_ALLOWED_HOSTS": "*"})
    assert curl("-H", "Host: evil.example", anything.url("/api/files/")).status == 200


def test_cross_site_writes_from_browsers_are_refused(start_ferry, tmp_path):
    ferry = start_ferry("--cors-origins", "https://app.example")
    (tmp_path / "p").write_bytes(b"pwned")
    evil = curl("-H", "Origin: https://evil.example", "-F", f"file=@{tmp_path / 'p'};filename=imp.txt",
                ferry.url("/api/files/?overwrite=1"))
    assert evil.status == 403 and evil.error_code() == "cross_origin_refused"
    assert not (ferry.root / "imp.txt").exists()
    moved = curl("-H", "Origin: null", "-H", "Content-Type: text/plain", "--data", '{"from": "a", "to": "b"}',
                 ferry.url("/api/move"))
    assert moved.status == 403
    allowed = curl("-H", "Origin: https://app.example", "-T", str(tmp_path / "p"), ferry.url("/api/files/ok.txt"))
    assert allowed.status == 201
    same_origin = curl("-H", f"Origin: http://127.0.0.1:{ferry.port}", "-T", str(tmp_path / "p"),
                       ferry.url("/api/files/same.txt"))
    assert same_origin.status == 201
    assert curl("-H", "Origin: https://evil.example", ferry.url("/api/files/ok.txt")).status == 200, "reads are fine"
