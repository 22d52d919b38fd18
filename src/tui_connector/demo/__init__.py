"""The built-in demo API: a real HTTP server on 127.0.0.1 serving every pagination style.

``server`` (the aiohttp app, ``DemoKnobs``, ``DemoServer``, ``serve_forever``), ``data``
(records generated on the fly, opaque cursors), ``faults`` (the deterministic fault decision).
"""
