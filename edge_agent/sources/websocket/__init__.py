"""The WebSocket source: protocol 1 on /stream/detection."""
