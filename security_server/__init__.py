"""The CDX security server: consumer gateway and provider endpoint of one agency (DESIGN §6)."""
