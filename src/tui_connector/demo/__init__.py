"""The built-in demo API: a real HTTP server on 127.0.0.1 serving every pagination style.

Where each part lives:

- ``server``: the aiohttp app and its control endpoints; ``DemoServer``, ``serve_forever``
- ``knobs``: ``DemoKnobs``, how the server behaves (latency, faults, capacity, tokens)
- ``state``: the request log, the occurrence counters and the capacity line (``DemoState``)
- ``routes``: the dataset routes (every pagination style) and the table of all of them
- ``hostile``: the routes that attack a client (hang, trickle, huge, redirects, ...)
- ``params``: what a request asks for (pages, cursors, sizes, the records it selects)
- ``replies``: what a handler answers (``Reply``) or how it refuses (``BadRequest``)
- ``pipeline``: what every dataset request goes through (capacity, latency, auth, faults, log)
- ``auth``: the credential forms the ``/secure`` routes accept
- ``oauth``: the OAuth2 token endpoint and the tokens the ``/oauth`` routes accept
- ``data``: records generated on the fly, opaque cursors
- ``faults``: the deterministic fault decision
"""
