"""mediafleet from Python (requests + boto3): a streamed upload with an Idempotency-Key, a presigned direct
upload (single PUT, or multipart above the server's threshold), an import of an object your app already
keeps in its own bucket (boto3 reads it, the bytes stream into mediafleet's presigned URLs with no local
copy), polling, and the webhook signature check.

    pip install requests boto3
    MEDIAFLEET_URL=http://127.0.0.1:8080 MEDIAFLEET_KEY=mfk_… python upload.py photo.jpg
    # also import s3://my-app-uploads/avatars/42.jpg (credentials and region from the usual AWS chain;
    # AWS_ENDPOINT_URL for an S3-compatible store):
    SOURCE_BUCKET=my-app-uploads SOURCE_KEY=avatars/42.jpg MEDIAFLEET_URL=… python upload.py photo.jpg

The presigned URLs are plain HTTPS requests signed by mediafleet: send them as they are, with no AWS
credentials of your own and no boto3 signing.
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


class _Sized:
    """A file-like view that tells requests its length, so a PUT is never chunked (S3 refuses chunked
    uploads to presigned URLs)."""

    def __init__(self, source, size: int):
        self.source, self.len = source, size

    def read(self, n: int = -1) -> bytes:
        return self.source.read(n if n >= 0 else None)


def presign(filename: str, content_type: str, size: int, **extra) -> dict:
    r = requests.post(f"{BASE}/v1/uploads/presign", headers=AUTH, timeout=60,
                      json={"filename": filename, "content_type": content_type, "bytes": size, **extra})
    r.raise_for_status()
    return r.json()


def send(answer: dict, source, size: int) -> str:
    """PUTs `source` (anything with .read(n)) to the presigned URL, or part by part to the multipart URLs
    keeping one part in memory, then completes the upload."""
    if "upload" in answer:
        up = answer["upload"]
        requests.put(up["url"], data=_Sized(source, size), headers=up["headers"], timeout=300).raise_for_status()
        done = {}
    else:
        mp, parts = answer["multipart"], []
        for part in mp["parts"]:
            put = requests.put(part["url"], data=source.read(mp["part_size"]), timeout=300)
            put.raise_for_status()
            parts.append({"number": part["number"], "etag": put.headers["ETag"]})
        done = {"parts": parts}
    requests.post(f"{BASE}/v1/uploads/{answer['id']}/complete", json=done, headers=AUTH,
                  timeout=60).raise_for_status()
    return answer["id"]


def presigned(path: str) -> str:
    size = os.path.getsize(path)
    answer = presign(os.path.basename(path), "image/jpeg", size)
    with open(path, "rb") as f:
        return send(answer, f, size)


def import_from_bucket(bucket: str, key: str) -> str:
    import boto3  # only this flow needs it

    s3 = boto3.client("s3")
    head = s3.head_object(Bucket=bucket, Key=key)
    size = head["ContentLength"]
    answer = presign(key.rsplit("/", 1)[-1], head.get("ContentType", "application/octet-stream"), size,
                     external_id=f"s3://{bucket}/{key}")
    return send(answer, s3.get_object(Bucket=bucket, Key=key)["Body"], size)


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
    if os.environ.get("SOURCE_BUCKET"):
        ids.append(import_from_bucket(os.environ["SOURCE_BUCKET"], os.environ["SOURCE_KEY"]))
    ok = True
    for i in ids:
        status = wait(i)
        print(i, status)
        ok &= status == "ready"
    sys.exit(0 if ok else 1)
