"""The worker: background jobs over the api database."""
