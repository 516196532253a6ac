"""Edge: TLS settings and (with the edge issue) headers, rate limits and request filtering."""
