"""mediafleet from Python (requests): a streamed upload with an Idempotency-Key, a presigned direct upload
(single PUT, or multipart above the server's threshold), polling, and the webhook signature check.

    MEDIAFLEET_URL=http://127.0.0.1:8080 MEDIAFLEET_KEY=mfk_… python upload.py photo.jpg

The presigned URLs are plain HTTPS requests, so requests is enough to send them; boto3 is only needed if
your backend also talks to the bucket itself.
"""
import hashlib
import hmac
import os
import sys
import time
import uuid

import requests

BASE = os.environ.get("MEDIAFLEET_URL", "http://127.0.0.1:8080")
AUTH = {"Authorization": f"Bearer {os.environ['MEDIAFLEET_KEY']}"} if os.environ.get("MEDIAFLEET_KEY") else {}


def verify_webhook(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """Checks `Mediafleet-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`."""
    parts = dict(p.strip().split("=", 1) for p in header.split(",") if "=" in p)
    if "t" not in parts or "v1" not in parts or abs(time.time() - int(parts["t"])) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def upload(path: str) -> str:
    key = str(uuid.uuid4())
    for _ in range(2):  # a retry with the same key returns the same media
        with open(path, "rb") as f:
            r = requests.post(f"{BASE}/v1/uploads", headers={**AUTH, "Idempotency-Key": key},
                              files={"file": f}, data={"external_id": "py-1"}, timeout=60)
        r.raise_for_status()
    return r.json()["id"]


def presigned(path: str) -> str:
    size = os.path.getsize(path)
    r = requests.post(f"{BASE}/v1/uploads/presign", headers=AUTH, timeout=60,
                      json={"filename": os.path.basename(path), "content_type": "image/jpeg", "bytes": size})
    r.raise_for_status()
    answer = r.json()
    with open(path, "rb") as f:
        if "upload" in answer:
            up = answer["upload"]
            requests.put(up["url"], data=f.read(), headers=up["headers"], timeout=300).raise_for_status()
            body = {}
        else:
            mp, parts = answer["multipart"], []
            for part in mp["parts"]:
                chunk = f.read(mp["part_size"])
                put = requests.put(part["url"], data=chunk, timeout=300)
                put.raise_for_status()
                parts.append({"number": part["number"], "etag": put.headers["ETag"]})
            body = {"parts": parts}
    requests.post(f"{BASE}/v1/uploads/{answer['id']}/complete", json=body, headers=AUTH,
                  timeout=60).raise_for_status()
    return answer["id"]


def wait(media_id: str) -> str:
    for _ in range(300):
        status = requests.get(f"{BASE}/v1/media/{media_id}", headers=AUTH, timeout=10).json()["status"]
        if status in ("ready", "failed"):
            return status
        time.sleep(0.2)
    return "timeout"


if __name__ == "__main__":
    t = str(int(time.time()))
    sig = hmac.new(b"s", f"{t}.".encode() + b"{}", hashlib.sha256).hexdigest()
    assert verify_webhook("s", f"t={t},v1={sig}", b"{}")
    ids = [upload(sys.argv[1]), presigned(sys.argv[1])]
    ok = True
    for i in ids:
        status = wait(i)
        print(i, status)
        ok &= status == "ready"
    sys.exit(0 if ok else 1)
