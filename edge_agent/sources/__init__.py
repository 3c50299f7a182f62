"""Sources: what feeds frames (WebSocket sessions, POST /v1/detect; cameras next), scheduled fairly."""
