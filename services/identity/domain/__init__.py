"""Pure identity rules: users, clients, passwords, TOTP, codes, refresh families, throttling."""
