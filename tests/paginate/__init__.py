"""Unit tests of tui_connector.paginate, one file per module; fakes.py holds their helpers."""
