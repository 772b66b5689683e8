"""The fleet-state service: the last known state of every station, for operators."""
