"""The Textual dashboard. The engine never imports this package; the CLI does."""

from tui_connector.tui.app import Dashboard, run_dashboard

__all__ = ["Dashboard", "run_dashboard"]
