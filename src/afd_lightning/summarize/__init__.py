"""afd-summarize: finding runs and evaluations, aggregating them over seeds, and writing the summary."""
