"""The notification service: tells citizens about the use of their data (docs/adr/0019)."""
