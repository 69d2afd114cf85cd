"""The CDX audit log: a central RFC 9162 transparency log of signed access records (DESIGN §8)."""
