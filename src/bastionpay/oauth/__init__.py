"""OAuth 2.0 authorization server (issue 5, item 6; I6). See docs/identity.md, "OAuth 2.0"."""
