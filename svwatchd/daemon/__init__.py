"""svwatchd, the directory-watching ingestion daemon."""
