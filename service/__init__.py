"""Server plumbing shared by the origin, the edges and the fleet: the event loop, one-line JSON logs,
the error-to-JSON middleware, Prometheus metrics, and serving with a graceful shutdown."""
