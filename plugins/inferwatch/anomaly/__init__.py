"""Input anomalies: an isolation forest per model version, fitted on its training reference,
scores a bounded sample of each day's inputs (``forest`` fits, ``score`` samples and writes)."""
