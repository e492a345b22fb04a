"""All reading and writing lives here: sources, Delta tables, reports."""
