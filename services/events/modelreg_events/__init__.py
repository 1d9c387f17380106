"""The events service:
the event log and audit trail, subscriptions, webhooks and their deliveries.
"""
