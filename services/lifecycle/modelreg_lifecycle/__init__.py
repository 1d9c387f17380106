"""The lifecycle service:
aliases, stages, transition requests and approvals, deployments, production metrics.
"""
