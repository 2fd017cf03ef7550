"""The HTTP edge: bodies and queries, responses, ETags, headers, CORS, proxies, limits, auth, OpenAPI."""
