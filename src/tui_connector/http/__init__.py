"""HTTP for one source: it turns a `PageRequest` into decoded JSON, or raises a `FetchError`
that says what happened, with every secret redacted. It knows nothing of pagination, storage
or the UI, and it decides nothing about the source's status: it reports what happened through
`report.HttpReport`, and the run's telemetry keeps the picture.

- `source`: `SourceHttp`, the facade the engine uses (`fetch`, `set_rate_limit`,
  `held_until`, `aclose`), composing the parts below.
- `client`: the pooled `httpx.AsyncClient` (aiohttp transport by default), static auth, TLS.
- `transport`: the client's transport, whose every failure says what happened (refused,
  reset, no reply, an invalid response, TLS, DNS), a timeout only for a timeout.
- `body`: reading a body under `max_response_size`, decoding JSON, releasing responses.
- `retry`: the retry policy (tenacity), `Retry-After`, what an error status means.
- `hold`: the source-wide `Retry-After` hold (`retry.retry_after: source`) and its line.
- `redirects`: following redirects by hand, refusing other hosts.
- `attempt`: `Exchange`, one attempt's request sent and its body read, reported; a page's
  and a token request's alike.
- `oauth2`: `OAuth2Tokens`, the OAuth2 access token of one auth block (obtained, renewed, one
  request at a time), shared by the sources that give it (`SharedTokens`).
- `token_endpoint`: `TokenEndpoint`, the token request as one source sends it, and what the
  provider's answer says; `secret_file`: the file a refresh token is kept in.
- `errors`: `FetchError`, `TokenError`.
- `report`: `HttpReport`, what the layer tells.

Modules import each other absolutely (`tui_connector.http.…`): the package's name is the
standard library's, which absolute imports elsewhere still find first.
"""
