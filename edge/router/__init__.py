"""The fleet: edges started, stopped and steered on popularity (router + autoscaler)."""
