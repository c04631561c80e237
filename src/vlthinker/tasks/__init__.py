"""What each pipeline component does, as plain functions of (config, paths) -> metadata.

KFP components in ``components/`` are three-line adapters around these: they turn artifacts into
paths and the returned dict into artifact metadata. Keeping the work here means it is tested
without KFP and identical on a laptop (kfp.local) and on a cluster.
"""
