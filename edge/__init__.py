"""The caching edge node, and (``edge.router``) the fleet that starts, stops and steers edges."""
