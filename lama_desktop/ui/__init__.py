"""Qt widgets: they show cluster and engine state and send commands; no business logic."""
