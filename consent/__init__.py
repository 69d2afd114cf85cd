"""The CDX consent service: citizens grant, pause and revoke consent; agencies request it;
provider security servers check it and follow its change feed (DESIGN §7)."""
