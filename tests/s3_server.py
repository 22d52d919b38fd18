"""A real S3 endpoint for the tests: moto's S3 server on 127.0.0.1, in a thread of the test
process, spoken to only over HTTP (no in-process patching of any client).

The endpoint checks credentials as S3 does: it starts with one IAM user allowed everything
(the lake's user, whose key the tests give the lake through the standard AWS_* variables),
then turns authentication on, so every request must be signed with a key the endpoint knows
and carry a valid signature. A wrong secret is refused (SignatureDoesNotMatch), and a user
whose policy does not allow writing is denied (AccessDenied), as on S3.

conftest.py's fixtures: `s3` (this endpoint, one per session) and `bucket` (a fresh bucket per
test, with the AWS_* variables set for the test and the processes it starts)."""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx

REGION = "us-east-1"
ALLOW_EVERYTHING = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
# Reading, and taking a table's lock (`_tc_locks/`), but writing nothing else.
ALLOW_READING = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:DeleteObject"],
            "Resource": "arn:aws:s3:::*/_tc_locks/*",
        },
    ],
}


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str


class S3Endpoint:
    """moto's S3 server on an ephemeral 127.0.0.1 port, with authentication on."""

    def __init__(self) -> None:
        self._server: Any = None
        self.url = ""
        self.lake_user = Credentials("", "")
        self._bucket_numbers = itertools.count(1)
        self._user_numbers = itertools.count(1)

    def start(self) -> S3Endpoint:
        from moto.server import ThreadedMotoServer

        # Werkzeug logs every request at INFO: thousands of lines that bury a failure's output.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        # Until authentication is on, the endpoint takes any key: make the lake's user with it.
        self.lake_user = self.create_user("lake", ALLOW_EVERYTHING, Credentials("setup", "setup"))
        reply = httpx.post(
            f"{self.url}/moto-api/reset-auth",
            content=b"0",  # requests served before authentication is enforced: none from now
            headers={"content-type": "text/plain"},
        )
        reply.raise_for_status()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> S3Endpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, service: str = "s3", credentials: Credentials | None = None) -> Any:
        """A boto3 client of this endpoint (the lake's user unless told otherwise)."""
        import boto3

        who = credentials or self.lake_user
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=who.access_key_id,
            aws_secret_access_key=who.secret_access_key,
        )

    def create_user(
        self, name: str, policy: dict[str, Any], credentials: Credentials | None = None
    ) -> Credentials:
        """A new IAM user with an inline policy, and its access key."""
        iam = self.client("iam", credentials)
        user = f"{name}-{next(self._user_numbers)}"
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="lake", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    def create_bucket(self) -> Bucket:
        name = f"lake-{next(self._bucket_numbers)}"
        self.client().create_bucket(Bucket=name)
        return Bucket(self, name)

    def bucket(self, name: str) -> Bucket:
        """An existing bucket."""
        return Bucket(self, name)

    def env(self, credentials: Credentials | None = None) -> dict[str, str]:
        """The standard variables that point an S3 client (obstore, delta-rs) here."""
        who = credentials or self.lake_user
        return {
            "AWS_ACCESS_KEY_ID": who.access_key_id,
            "AWS_SECRET_ACCESS_KEY": who.secret_access_key,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ALLOW_HTTP": "true",
        }

    def storage_options(self) -> dict[str, str]:
        """The same, as the storage options of a reader (deltalake)."""
        return {name.lower(): value for name, value in self.env().items()}

    def filesystem(self) -> Any:
        """A pyarrow filesystem of this endpoint, for reading Parquet with pyarrow.dataset."""
        from pyarrow.fs import S3FileSystem

        return S3FileSystem(
            access_key=self.lake_user.access_key_id,
            secret_key=self.lake_user.secret_access_key,
            region=REGION,
            endpoint_override=self.url,
            scheme="http",
        )


@dataclass(frozen=True)
class Bucket:
    """One test's bucket on the endpoint."""

    endpoint: S3Endpoint
    name: str

    def url(self, prefix: str = "lake") -> str:
        return f"s3://{self.name}/{prefix}" if prefix else f"s3://{self.name}"

    def object_keys(self, prefix: str = "") -> list[str]:
        """Every object's key under a prefix, in order."""
        pages = self.endpoint.client().get_paginator("list_objects_v2")
        return sorted(
            item["Key"]
            for page in pages.paginate(Bucket=self.name, Prefix=prefix)
            for item in page.get("Contents", [])
        )

    def read(self, key: str) -> bytes:
        body = self.endpoint.client().get_object(Bucket=self.name, Key=key)["Body"]
        return bytes(body.read())
