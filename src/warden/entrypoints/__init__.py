"""The ways in: the `warden` CLI and the HTTP API. Thin: they parse, call the engine, render."""
