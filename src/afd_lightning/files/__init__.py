"""The doors: one reader for files we did not write, one no-follow writer for folders we were given."""
