"""Edge Agent: real-time hazard detection for edge boxes."""

__version__ = "0.1.0"
