"""The artifact service:
model files: streamed, checksummed, content-addressed blobs and their manifests.
"""
