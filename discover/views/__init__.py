"""Read-only views of run directories: the `show`/`tree`/`export`/`compare` text
(inspection.py), the static HTML report (report.py) and the live page (ui.py, ui_static/)."""
