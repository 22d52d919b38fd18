"""The `auth:` section of a source: how it proves who it is. Every credential is a `SecretStr`,
redacted by value wherever it could show (`loading` collects the values)."""

from __future__ import annotations

import base64
import os
import re
from typing import Annotated, Literal
from urllib.parse import quote_plus

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from tui_connector.config.fields import (
    FilePath,
    HttpUrl,
    Scalar,
    ScalarValue,
    Strict,
    scalar_text,
)


class BearerAuth(Strict):
    """`Authorization: Bearer <token>`."""

    type: Literal["bearer"]
    token: SecretStr


class BasicAuth(Strict):
    """HTTP Basic: a user name and a password."""

    type: Literal["basic"]
    username: str
    password: SecretStr


class ApiKeyAuth(Strict):
    """A key sent in a header or a query parameter."""

    type: Literal["api_key"]
    key: SecretStr
    header: str | None = None
    param: str | None = None

    @model_validator(mode="after")
    def _one_place(self) -> ApiKeyAuth:
        if (self.header is None) == (self.param is None):
            raise ValueError("give exactly one of 'header' or 'param' to say where the key goes")
        return self


# Form fields of a token request that the grant and the client authentication set themselves.
_TOKEN_REQUEST_FIELDS = frozenset(
    {"grant_type", "scope", "refresh_token", "client_id", "client_secret"}
)
# A scope (RFC 6749 §3.3): printable ASCII but space, double quote and backslash.
_SCOPE_TOKEN = re.compile(r"[!#-\[\]-~]+")


def _check_scope(scope: str) -> str:
    if not _SCOPE_TOKEN.fullmatch(scope):
        raise ValueError(
            f"{scope!r} is not one scope: write each scope as its own list item, "
            "without spaces, quotes or backslashes"
        )
    return scope


OAuthScope = Annotated[
    str, AfterValidator(_check_scope), WithJsonSchema({"type": "string", "minLength": 1})
]


class OAuth2Auth(Strict):
    """OAuth 2.0: a bearer access token from the provider's token endpoint, fetched before
    the first request, refreshed ahead of its expiry and once on a 401."""

    type: Literal["oauth2"]
    token_url: HttpUrl = Field(description="the provider's token endpoint")
    grant: Literal["client_credentials", "refresh_token"] = Field(
        default="client_credentials",
        description="client_credentials (the client's own access) or refresh_token (a "
        "refresh token obtained once, e.g. by a user's consent)",
    )
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = Field(
        default=None,
        validate_default=True,
        description="required but for a public client (refresh_token grant)",
    )
    client_auth: Literal["basic", "post"] = Field(
        default="basic",
        validate_default=True,
        description="how the client authenticates: HTTP Basic (client_secret_basic) or in "
        "the form (client_secret_post)",
    )
    scopes: tuple[OAuthScope, ...] = Field(default=(), description="sent as `scope`")
    refresh_token: SecretStr | None = Field(
        default=None, description="for grant: refresh_token; e.g. ${REFRESH_TOKEN}"
    )
    refresh_token_file: FilePath | None = Field(
        default=None,
        description="for grant: refresh_token: a file holding the newest refresh token "
        "(relative to this file); a provider that rotates them has the new one written here",
    )
    token_params: dict[str, ScalarValue] = Field(
        default={},
        description="more form fields of the token request: audience, resource, ...",
    )

    # Each check names the field it is about; those that need another field pass when that
    # one failed its own validation (it is missing from `info.data`).

    @field_validator("client_secret")
    @classmethod
    def _secret_for_client_credentials(
        cls, secret: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        if secret is None and info.data.get("grant") == "client_credentials":
            raise ValueError(
                "grant: client_credentials authenticates the client with its secret: "
                "set client_secret (e.g. ${CLIENT_SECRET})"
            )
        return secret

    @field_validator("client_auth")
    @classmethod
    def _basic_needs_a_secret(cls, client_auth: str, info: ValidationInfo) -> str:
        secret_missing = "client_secret" in info.data and info.data["client_secret"] is None
        if client_auth == "basic" and secret_missing:
            raise ValueError(
                "client_auth: basic (the default) sends client_secret, which is not set; "
                "a public client (no secret) uses client_auth: post"
            )
        return client_auth

    @field_validator("refresh_token", "refresh_token_file")
    @classmethod
    def _only_to_refresh(cls, value: object, info: ValidationInfo) -> object:
        if value is not None and info.data.get("grant") == "client_credentials":
            raise ValueError(
                f"{info.field_name} is used by grant: refresh_token only; set the grant, or drop it"
            )
        return value

    @field_validator("token_params")
    @classmethod
    def _not_the_grants_own(cls, params: dict[str, Scalar]) -> dict[str, Scalar]:
        reserved = sorted(_TOKEN_REQUEST_FIELDS & set(params))
        if reserved:
            raise ValueError(
                f"{reserved[0]!r} is set by the grant and client_auth, not here; use the "
                "fields grant, scopes, refresh_token, client_id and client_secret"
            )
        return params

    @model_validator(mode="after")
    def _has_a_refresh_token(self) -> OAuth2Auth:
        if self.grant == "refresh_token" and not (self.refresh_token or self.refresh_token_file):
            raise ValueError(
                "grant: refresh_token needs the refresh token: set refresh_token (e.g. "
                "${REFRESH_TOKEN}) or refresh_token_file (a file that holds it)"
            )
        return self

    def basic_credentials(self) -> str:
        """What `Authorization: Basic` carries for client_auth: basic: the client id and
        secret, each form-urlencoded first (RFC 6749 §2.3.1), then base64."""
        secret = self.client_secret.get_secret_value() if self.client_secret else ""
        pair = f"{quote_plus(self.client_id)}:{quote_plus(secret)}"
        return base64.b64encode(pair.encode()).decode()

    def refresh_token_identity(self) -> str | None:
        """Where the refresh token of the refresh token grant is read from: the file (the
        real one, past symbolic links), which comes first, else the configured token."""
        if self.grant != "refresh_token":
            return None
        if self.refresh_token_file is not None:
            return os.path.realpath(self.refresh_token_file)
        return self.refresh_token.get_secret_value() if self.refresh_token else None

    def token_identity(self) -> tuple[object, ...]:
        """What makes the access token this block asks for: blocks alike in these share one
        (how the client authenticates is not among them: either way gets the same token)."""
        secret = self.client_secret.get_secret_value() if self.client_secret else None
        return (
            self.token_url,
            self.client_id,
            secret,
            self.grant,
            self.scopes,
            tuple(sorted((name, scalar_text(value)) for name, value in self.token_params.items())),
            self.refresh_token_identity(),
        )

    def secret_values(self) -> list[str]:
        """The credentials of the config, in every form they are sent in (tokens obtained
        at run time are redacted as they arrive)."""
        values = [self.refresh_token.get_secret_value()] if self.refresh_token else []
        if self.client_secret is not None:
            values += [self.client_secret.get_secret_value(), self.basic_credentials()]
        return values


Auth = Annotated[BearerAuth | BasicAuth | ApiKeyAuth | OAuth2Auth, Field(discriminator="type")]
