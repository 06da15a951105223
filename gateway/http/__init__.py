"""The HTTP edge: the app factory, its middleware and handlers, the OpenAPI document."""
