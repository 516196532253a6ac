"""Identity: operator accounts, passwords, MFA, sessions and roles (issue 5; docs/identity.md)."""
