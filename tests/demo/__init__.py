"""Tests of the built-in demo API (``tui_connector.demo``), one file per part of it."""
