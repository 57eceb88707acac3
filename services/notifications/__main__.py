"""`python -m notifications`: run the notifications service."""

from notifications.bootstrap import main

if __name__ == "__main__":
    main()
