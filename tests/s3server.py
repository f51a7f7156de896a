"""A real S3-compatible server on 127.0.0.1 for the shared run cache's tests.

moto in server mode (``moto[server]``): MinIO is on no package registry, and moto's server
speaks the S3 REST protocol over HTTP, so s3fs, aiobotocore and botocore go through their
whole HTTP stack (signing, retries, errors) as they do against AWS; only the far end is
moto's in-memory store. The client finds it the way a user points it at MinIO or any other
endpoint: ``AWS_ENDPOINT_URL`` (botocore reads it at each client's creation, so setting it
in a test is enough; ``FSSPEC_S3_ENDPOINT_URL`` works too, but fsspec reads its
``FSSPEC_*`` variables once, when it is imported), with credentials in ``AWS_*`` variables.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager

BUCKET = "modelgate-test"
# Dummy credentials moto accepts; distinctive, so a test can check they are never echoed.
ACCESS_KEY = "AKIAMODELGATETEST"
SECRET_KEY = "s3cr3t-modelgate-test-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def s3_server() -> Iterator[str]:
    """A moto S3 server with ``BUCKET`` created, for as long as the block runs: its
    endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY
                     ).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


def client_environment(endpoint: str) -> dict[str, str]:
    """The variables a user sets to reach this server with s3fs: the endpoint and the
    credentials, and nothing read from ``~/.aws`` or an instance's metadata service."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent/modelgate-test",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/modelgate-test",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
