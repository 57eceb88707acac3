"""The notifications service: tells citizens and agents what happened, by email, SMS or in-app.

Owns routing rules (event type -> notification), templates per tenant, user preferences, the
delivery ledger (exactly-once effect per event, recipient and channel), the in-app inboxes and
a projection of users' contact data built from identity's events. It never owns the facts it
announces: those stay in the producing services' streams.
"""
