#!/usr/bin/env python3
"""A tiny read-only Docker registry (HTTP API v2) serving one image, for tests.

No image registry is reachable from the development machines, so the test that watches a
renter's pull progress runs this on 127.0.0.1 (Docker talks plain HTTP to registries on
loopback). It serves image NAME:TAG made from one root filesystem tarball, as a gzipped
layer, and can send that layer slowly so a pull takes a while.

    registry.py --rootfs FILE.tar --name gpuflow-test/pulled --tag 1 [--bytes-per-sec N]

Prints `listening PORT` on stdout once it accepts connections; stops on SIGTERM.
"""

import argparse
import gzip
import hashlib
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build(rootfs):
    raw = open(rootfs, "rb").read()
    layer = gzip.compress(raw, compresslevel=1, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Cmd": ["/bin/sh"],
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            },
            "rootfs": {"type": "layers", "diff_ids": [digest(raw)]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "size": len(config), "digest": digest(config)},
            "layers": [{"mediaType": LAYER, "size": len(layer), "digest": digest(layer)}],
        }
    ).encode()
    return manifest, {digest(config): config, digest(layer): layer}, digest(layer)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rootfs", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--bytes-per-sec", type=int, default=0)
    args = ap.parse_args()
    manifest, blobs, layer_digest = build(args.rootfs)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def send(self, status, body=b"", ctype="application/json", extra=None, slow=False):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command == "HEAD":
                return
            if not slow or args.bytes_per_sec <= 0:
                self.wfile.write(body)
                return
            step = max(1, args.bytes_per_sec // 10)
            for i in range(0, len(body), step):
                self.wfile.write(body[i : i + step])
                self.wfile.flush()
                time.sleep(0.1)

        def do_GET(self):
            path = self.path.split("?")[0]
            if path in ("/v2", "/v2/"):
                return self.send(200, b"{}")
            prefix = "/v2/" + args.name + "/"
            if path == prefix + "manifests/" + args.tag or path == prefix + "manifests/" + digest(manifest):
                return self.send(200, manifest, MANIFEST, {"Docker-Content-Digest": digest(manifest)})
            if path.startswith(prefix + "blobs/"):
                d = path[len(prefix + "blobs/") :]
                if d in blobs:
                    return self.send(
                        200,
                        blobs[d],
                        "application/octet-stream",
                        {"Docker-Content-Digest": d},
                        slow=(d == layer_digest),
                    )
            self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"not here"}]}')

        do_HEAD = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("listening", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
