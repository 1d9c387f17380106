"""The metadata service:
experiments, runs, registered models, model versions, lineage and search.
"""
