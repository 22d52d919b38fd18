"""Pull HTTP/JSON APIs into a local data lake, concurrently, with a live dashboard."""

__version__ = "0.1.0"
