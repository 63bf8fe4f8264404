"""A minimal tus request helper for tests (raw requests, so every header and status can be asserted)."""

import base64
import http.client


def metadata(**pairs) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" if value is not None else key
                    for key, value in pairs.items())


class Tus:
    def __init__(self, port: int, endpoint: str = "/api/uploads/"):
        self.port = port
        self.endpoint = endpoint

    def request(self, method, path, body=b"", headers=None, tus=True):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        all_headers = {"Tus-Resumable": "1.0.0"} if tus else {}
        all_headers.update(headers or {})
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def create(self, length=None, meta=None, headers=None, body=b""):
        all_headers = dict(headers or {})
        if length is not None:
            all_headers["Upload-Length"] = str(length)
        if meta is not None:
            all_headers["Upload-Metadata"] = meta
        if body:
            all_headers["Content-Type"] = "application/offset+octet-stream"
        return self.request("POST", self.endpoint, body, all_headers)

    def url_of(self, location: str) -> str:
        """Resolves a Location the way tus clients do: against the endpoint URL."""
        from urllib.parse import urljoin
        return urljoin(self.endpoint, location)

    def patch(self, url, offset, body, headers=None):
        all_headers = {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
        all_headers.update(headers or {})
        return self.request("PATCH", url, body, all_headers)

    def head(self, url, headers=None):
        return self.request("HEAD", url, b"", headers)


def patch_file(port, url, offset, path, count, extra_headers=None):
    """PATCHes `count` bytes of the file at `path` from `offset`, sent with sendfile (fast for gigabytes).
    Returns (status, headers)."""
    import socket

    head = (f"PATCH {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\n"
            f"Content-Type: application/offset+octet-stream\r\nContent-Length: {count}\r\n")
    for name, value in (extra_headers or {}).items():
        head += f"{name}: {value}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=600) as sock, open(path, "rb") as source:
        sock.sendall((head + "\r\n").encode())
        assert sock.sendfile(source, offset, count) == count
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(65536)
            if not chunk:
                break
            response += chunk
    lines = response.split(b"\r\n\r\n")[0].decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers
