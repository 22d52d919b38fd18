from tui_connector.cli import main

main()
