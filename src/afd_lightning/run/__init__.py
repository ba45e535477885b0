"""One run's life on disk: its directory and lock, provenance, Hydra record, loggers and building objects from the user's config."""
