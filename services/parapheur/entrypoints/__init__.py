"""How the outside world reaches the parapheur: its HTTP API."""
