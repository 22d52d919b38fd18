"""The Textual dashboard: `tui.app.run_dashboard`. The engine never imports this package; the
CLI does. Importing the package loads nothing: `tui.format` stays free of Textual."""
