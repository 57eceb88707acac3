"""HTTP entry points: OIDC/OAuth endpoints, the login pages, the admin and self-service API."""
