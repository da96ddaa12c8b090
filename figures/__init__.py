"""One script per figure; each splits compute (returns data, saved as JSON) from plot (draws from the JSON)."""
