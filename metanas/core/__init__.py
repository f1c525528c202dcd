"""The foundation every layer may use: the project's error type, the lookup registry, package files, devices
and seeds, atomic writes, tables and headless figures. Nothing here knows about networks or tasks."""
