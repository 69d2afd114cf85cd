"""The CDX registry: the instance's trust root (CA, members, servers, services, agreements) and
the signed global configuration every security server decides by (DESIGN §5, §7)."""
