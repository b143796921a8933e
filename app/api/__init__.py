"""HTTP routes only: read the request, call the pipeline, shape the response."""
