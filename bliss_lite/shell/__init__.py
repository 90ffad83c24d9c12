"""The interactive shell: standard commands (plain functions), display, ptpython REPL, CLI runner."""
